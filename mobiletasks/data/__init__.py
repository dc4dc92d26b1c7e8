"""Datasets, data modules and augmentations (albumentations lives only in ``transforms``)."""

from .coco import COCODetection, COCODetectionDataModule
from .collate import detection_collate, segmentation_collate
from .segmentation import COCOSegmentationDataModule, ShapesSegmentationDataModule, VOCSegmentationDataModule
from .shapes import ShapesDetectionDataModule
from .voc import VOC_CLASSES, VOCDetection, VOCDetectionDataModule

__all__ = [
    "VOC_CLASSES",
    "COCODetection",
    "COCODetectionDataModule",
    "COCOSegmentationDataModule",
    "ShapesDetectionDataModule",
    "ShapesSegmentationDataModule",
    "VOCDetection",
    "VOCDetectionDataModule",
    "VOCSegmentationDataModule",
    "detection_collate",
    "segmentation_collate",
]
