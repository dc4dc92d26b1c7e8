"""The official metrics: COCO mAP (pycocotools), Pascal VOC mAP (VOC2007 11-point and VOC2010+ area), mIoU,
top-k accuracy and mean AP over attributes (torchmetrics); and their pictures (``figures()``, ``tables()`` and
``save_figures``: PR curves, confusion matrices, attribute AP bars)."""

from .classification import AttributeEvaluator, ClassificationEvaluator
from .coco import STAT_NAMES, COCOEvaluation, COCOEvaluator, evaluate_results, evaluate_results_file
from .plots import save_figures
from .segmentation import SegmentationEvaluator, multiscale_logits
from .voc import PrecisionEnvelope, VOCEvaluator, average_precision, precision_envelope

__all__ = [
    "STAT_NAMES",
    "AttributeEvaluator",
    "COCOEvaluation",
    "COCOEvaluator",
    "ClassificationEvaluator",
    "PrecisionEnvelope",
    "SegmentationEvaluator",
    "VOCEvaluator",
    "average_precision",
    "evaluate_results",
    "evaluate_results_file",
    "multiscale_logits",
    "precision_envelope",
    "save_figures",
]
