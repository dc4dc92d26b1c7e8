"""Datasets, data modules and augmentations (albumentations lives only in ``transforms``)."""

from .coco import COCODetection, COCODetectionDataModule
from .collate import detection_collate
from .shapes import ShapesDetectionDataModule
from .voc import VOC_CLASSES, VOCDetection, VOCDetectionDataModule

__all__ = [
    "VOC_CLASSES",
    "COCODetection",
    "COCODetectionDataModule",
    "ShapesDetectionDataModule",
    "VOCDetection",
    "VOCDetectionDataModule",
    "detection_collate",
]
