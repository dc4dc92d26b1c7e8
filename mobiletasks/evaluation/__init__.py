"""The official metrics: COCO mAP (pycocotools) and Pascal VOC mAP (VOC2007 11-point and VOC2010+ area)."""

from .coco import STAT_NAMES, COCOEvaluator, evaluate_results_file
from .voc import VOCEvaluator, average_precision

__all__ = ["STAT_NAMES", "COCOEvaluator", "VOCEvaluator", "average_precision", "evaluate_results_file"]
