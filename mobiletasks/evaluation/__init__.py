"""The official metrics: COCO mAP (pycocotools), Pascal VOC mAP (VOC2007 11-point and VOC2010+ area), mIoU."""

from .coco import STAT_NAMES, COCOEvaluator, evaluate_results_file
from .segmentation import SegmentationEvaluator, multiscale_logits
from .voc import VOCEvaluator, average_precision

__all__ = [
    "STAT_NAMES",
    "COCOEvaluator",
    "SegmentationEvaluator",
    "VOCEvaluator",
    "average_precision",
    "evaluate_results_file",
    "multiscale_logits",
]
