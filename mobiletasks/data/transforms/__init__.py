"""Augmentations: detection (SSD), segmentation (DeepLab) and classification.

Modules, each importing only those above it:

- :mod:`.common`: seeding per DataLoader worker, the mean pixel and padding, input checks.
- :mod:`.sampling`: SSD's zoom out and IoU-constrained crop samplers (SSD paper section 2.2).
- :mod:`.photometric`: SSD's photometric distortion, drawn and applied.
- :mod:`.albumentations_pipelines`: everything that runs albumentations (the only module in mobiletasks that
  imports it): :class:`DetectionTransform`, :class:`SegmentationTransform`, :class:`ImageTransform`, the
  step-by-step SSD steps :class:`RandomZoomOut` and :class:`IoURandomCrop`, and the classification pipelines.
- :mod:`.detection`: :class:`SSDTransform`, SSD's training augmentation in one resize (:func:`train_transform`),
  and :func:`eval_transform`.
- :mod:`.segmentation`: :class:`RandomScaleCrop`, DeepLab's training augmentation in one resize
  (:func:`segmentation_train_transform`).

Boxes are xyxy pixels; every transform returns float32 image Tensors [3, H, W] in [0, 1].
"""

from mobiletasks.data.transforms.albumentations_pipelines import (
    DetectionTransform,
    ImageTransform,
    IoURandomCrop,
    RandomZoomOut,
    SegmentationTransform,
    classification_eval_transform,
    classification_train_transform,
)
from mobiletasks.data.transforms.common import MEAN_PIXEL
from mobiletasks.data.transforms.detection import SSDTransform, eval_transform, train_transform
from mobiletasks.data.transforms.photometric import (
    BRIGHTNESS_DELTA,
    CONTRAST_RANGE,
    HUE_DELTA,
    SATURATION_RANGE,
    Distortion,
    distort,
    sample_distortion,
)
from mobiletasks.data.transforms.sampling import SSD_MIN_IOUS, Crop, sample_iou_crop, sample_zoom_out
from mobiletasks.data.transforms.segmentation import RandomScaleCrop, segmentation_train_transform

__all__ = [
    "BRIGHTNESS_DELTA",
    "CONTRAST_RANGE",
    "HUE_DELTA",
    "MEAN_PIXEL",
    "SATURATION_RANGE",
    "SSD_MIN_IOUS",
    "Crop",
    "DetectionTransform",
    "Distortion",
    "ImageTransform",
    "IoURandomCrop",
    "RandomScaleCrop",
    "RandomZoomOut",
    "SSDTransform",
    "SegmentationTransform",
    "classification_eval_transform",
    "classification_train_transform",
    "distort",
    "eval_transform",
    "sample_distortion",
    "sample_iou_crop",
    "sample_zoom_out",
    "segmentation_train_transform",
    "train_transform",
]
