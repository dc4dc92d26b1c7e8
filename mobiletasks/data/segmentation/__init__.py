"""Segmentation datasets (masks of VOC, COCO and plain folders) and their data modules.

Imports the data layer's core modules and ``data.detection``'s VOC and COCO annotation readers (the
segmentation splits share VOC's folders and COCO's files); see ``docs/architecture.md``.
"""

from .datamodules import COCOSegmentationDataModule, SegmentationDataModule, VOCSegmentationDataModule
from .datasets import MaskFolder, SegmentationDataset, VOCSegmentation

__all__ = [
    "COCOSegmentationDataModule",
    "MaskFolder",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentation",
    "VOCSegmentationDataModule",
]
