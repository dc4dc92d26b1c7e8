"""Synthetic shapes datasets: colored geometric shapes on textured backgrounds, seeded, written in the official
layout of each task's real dataset, and the data modules that generate them on first use.

Layers, each importing only those above it:

- :mod:`~mobiletasks.data.synthetic.shapes`: the generator (``make_sample``, ``sample_rng``, ``SHAPE_CLASSES``);
- :mod:`~mobiletasks.data.synthetic.writers`: writing a dataset (checks, atomic replace, the marker file
  recording the settings, ``ensure_dataset``) and the COCO instances layout;
- one module per task: :mod:`~mobiletasks.data.synthetic.detection` (COCO, VOC),
  :mod:`~mobiletasks.data.synthetic.segmentation` (VOC segmentation, COCO with masks),
  :mod:`~mobiletasks.data.synthetic.classification` (ImageFolder, CelebA attributes);
- :mod:`~mobiletasks.data.synthetic.datamodules`: the four Shapes data modules on one base,
  :class:`~mobiletasks.data.synthetic.datamodules.ShapesDataModule`.

``mobiletasks data synth`` writes the same files by hand.
"""

from mobiletasks.data.synthetic.classification import (
    ATTRIBUTE_NAMES,
    CLASSIFICATION_CLASSES,
    classification_label,
    classification_sample,
    shape_attributes,
    write_attributes_dataset,
    write_classification_dataset,
)
from mobiletasks.data.synthetic.datamodules import (
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    ShapesDataModule,
    ShapesDetectionDataModule,
    ShapesLayout,
    ShapesSegmentationDataModule,
)
from mobiletasks.data.synthetic.detection import dataset_exists, write_detection_dataset
from mobiletasks.data.synthetic.segmentation import SEGMENTATION_CLASSES, class_mask, write_segmentation_dataset
from mobiletasks.data.synthetic.shapes import SHAPE_CLASSES, ShapeObject, make_sample, sample_rng
from mobiletasks.data.synthetic.writers import MARKER, dataset_matches, ensure_dataset, read_info

__all__ = [
    "ATTRIBUTE_NAMES",
    "CLASSIFICATION_CLASSES",
    "MARKER",
    "SEGMENTATION_CLASSES",
    "SHAPE_CLASSES",
    "ShapeObject",
    "ShapesAttributesDataModule",
    "ShapesClassificationDataModule",
    "ShapesDataModule",
    "ShapesDetectionDataModule",
    "ShapesLayout",
    "ShapesSegmentationDataModule",
    "class_mask",
    "classification_label",
    "classification_sample",
    "dataset_exists",
    "dataset_matches",
    "ensure_dataset",
    "make_sample",
    "read_info",
    "sample_rng",
    "shape_attributes",
    "write_attributes_dataset",
    "write_classification_dataset",
    "write_detection_dataset",
    "write_segmentation_dataset",
]
