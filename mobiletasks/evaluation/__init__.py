"""The official metrics: COCO mAP (pycocotools), Pascal VOC mAP (VOC2007 11-point and VOC2010+ area), mIoU,
top-k accuracy and mean AP over attributes (torchmetrics)."""

from .classification import AttributeEvaluator, ClassificationEvaluator
from .coco import STAT_NAMES, COCOEvaluator, evaluate_results_file
from .segmentation import SegmentationEvaluator, multiscale_logits
from .voc import VOCEvaluator, average_precision

__all__ = [
    "STAT_NAMES",
    "AttributeEvaluator",
    "COCOEvaluator",
    "ClassificationEvaluator",
    "SegmentationEvaluator",
    "VOCEvaluator",
    "average_precision",
    "evaluate_results_file",
    "multiscale_logits",
]
