"""Datasets, data modules and augmentations (albumentations lives only in ``transforms``)."""

from .celeba import CelebADataModule
from .classification import ClassificationDataModule, ClassificationDataset, ImageFolderDataModule
from .coco import COCODetection, COCODetectionDataModule
from .collate import classification_collate, detection_collate, segmentation_collate
from .fine_grained import CUBDataModule, StanfordDogsDataModule
from .segmentation import COCOSegmentationDataModule, ShapesSegmentationDataModule, VOCSegmentationDataModule
from .shapes import ShapesAttributesDataModule, ShapesClassificationDataModule, ShapesDetectionDataModule
from .voc import VOC_CLASSES, VOCDetection, VOCDetectionDataModule

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
