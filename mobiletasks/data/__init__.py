"""Datasets, data modules and augmentations (albumentations lives only in ``transforms``)."""

from .classification import (
    CelebADataModule,
    ClassificationDataModule,
    ClassificationDataset,
    CUBDataModule,
    ImageFolderDataModule,
    StanfordDogsDataModule,
)
from .collate import classification_collate, detection_collate, segmentation_collate
from .detection import VOC_CLASSES, COCODetection, COCODetectionDataModule, VOCDetection, VOCDetectionDataModule
from .segmentation import COCOSegmentationDataModule, VOCSegmentationDataModule
from .synthetic import (
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    ShapesDetectionDataModule,
    ShapesSegmentationDataModule,
)

__all__ = [
    "VOC_CLASSES",
    "COCODetection",
    "COCODetectionDataModule",
    "COCOSegmentationDataModule",
    "CUBDataModule",
    "CelebADataModule",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ImageFolderDataModule",
    "ShapesAttributesDataModule",
    "ShapesClassificationDataModule",
    "ShapesDetectionDataModule",
    "ShapesSegmentationDataModule",
    "StanfordDogsDataModule",
    "VOCDetection",
    "VOCDetectionDataModule",
    "VOCSegmentationDataModule",
    "classification_collate",
    "detection_collate",
    "segmentation_collate",
]
