"""Detection datasets and data modules: the common record and base classes, COCO JSON and Pascal VOC XML.

Imports the data layer's core modules (``base``, ``collate``, ``files``, ``io``, ``skips``, ``transforms``)
and ``mobiletasks.evaluation``'s COCO readers; see ``docs/architecture.md``.
"""

from .base import DetectionDataModule, DetectionDataset, Record, UnlabeledImages
from .coco import COCODetection, COCODetectionDataModule
from .voc import VOC_CLASSES, VOCDetection, VOCDetectionDataModule

__all__ = [
    "VOC_CLASSES",
    "COCODetection",
    "COCODetectionDataModule",
    "DetectionDataModule",
    "DetectionDataset",
    "Record",
    "UnlabeledImages",
    "VOCDetection",
    "VOCDetectionDataModule",
]
