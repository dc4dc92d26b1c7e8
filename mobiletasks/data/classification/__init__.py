"""Classification datasets and data modules: image folders, Stanford Dogs, CUB-200-2011 and CelebA attributes.

Imports the data layer's core modules only; see ``docs/architecture.md``.
"""

from .base import ClassificationDataModule, ClassificationDataset, ImageFolderDataModule
from .celeba import CelebADataModule
from .fine_grained import CUBDataModule, StanfordDogsDataModule

__all__ = [
    "CUBDataModule",
    "CelebADataModule",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ImageFolderDataModule",
    "StanfordDogsDataModule",
]
