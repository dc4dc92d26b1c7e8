"""Augmentations on albumentations (the only module that imports it): detection (SSD) and segmentation.

SSD paper (Liu et al. 2016, section 2.2 "Data augmentation" and section 3.6), in this order:
photometric distortion, zoom out (the image on a mean-filled canvas up to 4x its size, probability 0.5),
an IoU-constrained random crop, horizontal flip, resize to ``image_size x image_size``.

albumentations provides all but the zoom out and the IoU crop, written here as two small
``DualTransform`` subclasses (of ``A.Pad`` and of albumentations' ``BaseCrop``). Boxes go through
``A.BboxParams`` in ``pascal_voc`` format (xyxy pixels, the contract's format) with ``clip=True``; a box
under one output pixel wide or high is dropped. :class:`DetectionTransform` returns the indices of the
boxes it kept, so the caller gathers labels, ``difficult`` flags and anything else per box, and counts
what was dropped.

Evaluation images are not transformed at all (:func:`eval_transform`): the model resizes internally and
reports boxes in original pixels.

Segmentation (DeepLab, as torchvision's references/segmentation): :func:`segmentation_train_transform`
scales by a random factor, pads to the crop size (mask padding 255, ignored), crops and flips; masks are
resized nearest-neighbour, so they keep their class indices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.bbox_utils import denormalize_bboxes
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import Field
from torch import Tensor

from mobiletasks.data.collate import IGNORE_INDEX
from mobiletasks.data.io import image_to_tensor

# ImageNet mean in 0..255: the SSD zoom-out canvas colour (SSD fills with the mean pixel)
MEAN_PIXEL = (124, 116, 104)
# SSD paper section 2.2: "minimum jaccard overlap with the objects is 0.1, 0.3, 0.5, 0.7, or 0.9"; None = whole image
SSD_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)


class RandomZoomOut(A.Pad):
    """Place the image at a random position on a canvas ``s`` times its size, ``s ~ U(1, max_scale)``.

    The "expand" / zoom-out step of SSD (paper section 3.6): small objects for the small-scale layers.
    Boxes shift with the image; the canvas is filled with ``fill`` (the mean pixel).
    """

    class InitSchema(BaseTransformInitSchema):
        max_scale: float = Field(ge=1.0)
        fill: tuple[float, ...] | float

    def __init__(self, max_scale: float = 4.0, fill: tuple[float, ...] | float = MEAN_PIXEL, p: float = 0.5):
        super().__init__(padding=0, fill=fill, p=p)
        self.max_scale = max_scale

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(1.0, self.max_scale)
        extra_h, extra_w = int(height * scale) - height, int(width * scale) - width
        top, left = self.py_random.randint(0, extra_h), self.py_random.randint(0, extra_w)
        return {"pad_top": top, "pad_bottom": extra_h - top, "pad_left": left, "pad_right": extra_w - left}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_scale", "fill")


class IoURandomCrop(BaseCrop):
    """The SSD paper's patch sampler (section 2.2), as torchvision's ``RandomIoUCrop``.

    Pick a minimum IoU from ``min_ious`` (``None``: keep the whole image); try up to ``trials`` patches
    of ``scale`` x the image's sides with width/height ratio in ``aspect_ratio``; accept the first whose
    IoU with some box whose center lies inside it reaches the minimum. Boxes whose centers fall outside
    the patch are removed; the others are cut to it. An image without boxes takes any patch.
    """

    class InitSchema(BaseTransformInitSchema):
        min_ious: tuple[float | None, ...]
        scale: tuple[float, float]
        aspect_ratio: tuple[float, float]
        trials: int = Field(ge=1)

    def __init__(
        self,
        min_ious: tuple[float | None, ...] = SSD_MIN_IOUS,
        scale: tuple[float, float] = (0.3, 1.0),
        aspect_ratio: tuple[float, float] = (0.5, 2.0),
        trials: int = 50,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.min_ious = min_ious
        self.scale = scale
        self.aspect_ratio = aspect_ratio
        self.trials = trials

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = (0, 0, width, height)
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))
        boxes = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        for _ in range(self.trials):  # torchvision loops until a mode succeeds; bounded here
            min_iou = self.py_random.choice(self.min_ious)
            if min_iou is None:
                return {"crop_coords": whole}
            for _ in range(self.trials):
                crop = self._sample_patch(height, width)
                if crop is not None and self._accepts(crop, boxes, min_iou):
                    return {"crop_coords": crop}
        return {"crop_coords": whole}

    def _sample_patch(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        new_w = int(width * self.py_random.uniform(*self.scale))
        new_h = int(height * self.py_random.uniform(*self.scale))
        if new_w < 1 or new_h < 1 or not self.aspect_ratio[0] <= new_w / new_h <= self.aspect_ratio[1]:
            return None
        left = int((width - new_w) * self.py_random.random())
        top = int((height - new_h) * self.py_random.random())
        return (left, top, left + new_w, top + new_h)

    @staticmethod
    def _accepts(crop: tuple[int, int, int, int], boxes: np.ndarray, min_iou: float) -> bool:
        if len(boxes) == 0:
            return True
        inside = boxes[_centers_inside(boxes, crop)]
        if len(inside) == 0:
            return False
        x0, y0, x1, y1 = crop
        iw = np.clip(np.minimum(inside[:, 2], x1) - np.maximum(inside[:, 0], x0), 0, None)
        ih = np.clip(np.minimum(inside[:, 3], y1) - np.maximum(inside[:, 1], y0), 0, None)
        inter = iw * ih
        areas = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
        iou = inter / (areas + (x1 - x0) * (y1 - y0) - inter)
        return bool(iou.max() >= min_iou)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        pixels = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        kept = bboxes[_centers_inside(pixels, crop_coords)]
        return super().apply_to_bboxes(kept, crop_coords, **params)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "scale", "aspect_ratio", "trials")


def _centers_inside(boxes: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > crop[0]) & (cx < crop[2]) & (cy > crop[1]) & (cy < crop[3])


class DetectionTransform:
    """An albumentations pipeline on one detection sample.

    ``transform(image, boxes) -> (image_tensor, boxes, keep)``: ``image`` uint8 [H, W, 3], ``boxes``
    float [N, 4] xyxy pixels; returns a float32 Tensor [3, H', W'] in [0, 1], float32 boxes [K, 4] in
    the new image's pixels and int64 ``keep`` [K], the input rows the boxes come from (boxes with zero
    area on input, or under ``min_size`` output pixels wide or high, are dropped). No transforms: the
    image and boxes pass unchanged.

    Each DataLoader worker re-seeds the pipeline from ``torch.initial_seed()`` on its first sample, so
    workers draw different augmentations and ``lightning.seed_everything`` makes runs repeatable.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform] = (), min_size: float = 1.0) -> None:
        self.transforms = list(transforms)
        self.compose = A.Compose(
            self.transforms,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["indices"],
                clip=True,
                min_area=min_size * min_size,
                min_width=min_size,
                min_height=min_size,
            ),
        )
        self._seeded_in: tuple[int, int | None] | None = None

    def set_random_seed(self, seed: int) -> None:
        """Seed the pipeline (for this process; workers otherwise seed themselves)."""
        self.compose.set_random_seed(seed)
        self._seeded_in = _process_key()

    def __call__(self, image: np.ndarray, boxes: np.ndarray | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not self.transforms:
            return image_to_tensor(image), torch.from_numpy(boxes.copy()), torch.arange(len(boxes))
        if self._seeded_in != _process_key():
            self.set_random_seed(torch.initial_seed() % 2**32)
        valid = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        out = self.compose(image=image, bboxes=boxes[valid], indices=valid)
        kept = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        keep = np.asarray(out["indices"], dtype=np.int64).reshape(-1)
        return image_to_tensor(out["image"]), torch.from_numpy(kept), torch.from_numpy(keep)

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"{type(self).__name__}({names})"


def _process_key() -> tuple[int, int | None]:
    info = torch.utils.data.get_worker_info()
    return (os.getpid(), None if info is None else info.id)


def train_transform(image_size: int, augment: bool = True) -> DetectionTransform:
    """The SSD training pipeline ending in a ``image_size x image_size`` image; ``augment=False``: resize only.

    Example:
        >>> import numpy as np
        >>> t = train_transform(64)
        >>> image, boxes, keep = t(np.zeros((48, 80, 3), np.uint8), np.array([[10.0, 10.0, 40.0, 30.0]]))
        >>> tuple(image.shape)
        (3, 64, 64)
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    resize = A.Resize(image_size, image_size)
    if not augment:
        return DetectionTransform([resize])
    return DetectionTransform(
        [
            # photometric distortion (SSD: brightness +-32, contrast and saturation x[0.5, 1.5], hue +-18 degrees)
            A.RandomBrightnessContrast(brightness_limit=32 / 255, contrast_limit=0.0, p=0.5),
            A.ColorJitter(brightness=0.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=18 / 360, p=0.5),
            RandomZoomOut(max_scale=4.0, fill=MEAN_PIXEL, p=0.5),
            IoURandomCrop(),
            A.HorizontalFlip(p=0.5),
            resize,
        ]
    )


def eval_transform() -> DetectionTransform:
    """No transform: evaluation and prediction images keep their original size."""
    return DetectionTransform([])


# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationTransform:
    """An albumentations pipeline on one segmentation sample: image and mask move together.

    ``transform(image, mask) -> (image_tensor, mask_tensor)``: ``image`` uint8 [H, W, 3], ``mask`` integer
    [H, W] of class indices (0..255); returns a float32 Tensor [3, H', W'] in [0, 1] and an int64 Tensor
    [H', W']. No transforms: both pass unchanged. Worker re-seeding as :class:`DetectionTransform`.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform] = ()) -> None:
        self.transforms = list(transforms)
        self.compose = A.Compose(self.transforms)
        self._seeded_in: tuple[int, int | None] | None = None

    def set_random_seed(self, seed: int) -> None:
        """Seed the pipeline (for this process; workers otherwise seed themselves)."""
        self.compose.set_random_seed(seed)
        self._seeded_in = _process_key()

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        mask = np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask of shape {mask.shape} does not match the image's {image.shape[:2]}")
        if self.transforms:
            if self._seeded_in != _process_key():
                self.set_random_seed(torch.initial_seed() % 2**32)
            out = self.compose(image=image, mask=mask.astype(np.uint8))  # cv2 warps uint8 masks; values <= 255
            image, mask = out["image"], out["mask"]
        return image_to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"{type(self).__name__}({names})"


def segmentation_train_transform(
    crop_size: int, scale_range: tuple[float, float] = (0.5, 2.0), augment: bool = True
) -> SegmentationTransform:
    """DeepLab's training pipeline (torchvision's references/segmentation): random scale in ``scale_range``,
    pad to ``crop_size`` (image with the mean pixel, mask with 255), random ``crop_size`` square crop,
    horizontal flip. Masks are resized nearest-neighbour. ``augment=False``: pad and center crop only.

    Example:
        >>> import numpy as np
        >>> t = segmentation_train_transform(64)
        >>> image, mask = t(np.zeros((48, 80, 3), np.uint8), np.ones((48, 80), np.uint8))
        >>> tuple(image.shape), tuple(mask.shape), mask.dtype
        ((3, 64, 64), (64, 64), torch.int64)
    """
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive number of pixels, got {crop_size!r}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, e.g. (0.5, 2.0), got {scale_range}")
    pad = A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, fill_mask=IGNORE_INDEX)
    if not augment:
        return SegmentationTransform([pad, A.CenterCrop(crop_size, crop_size)])
    return SegmentationTransform(
        [
            # scale_limit is relative to 1: (low - 1, high - 1) draws the factor uniformly from [low, high]
            A.RandomScale(
                scale_limit=(low - 1, high - 1),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            ),
            pad,
            A.RandomCrop(crop_size, crop_size),
            A.HorizontalFlip(p=0.5),
        ]
    )


# ---------------------------------------------------------------------------------------------- classification


class ImageTransform(SegmentationTransform):
    """An albumentations pipeline on an image alone: ``transform(image) -> Tensor [3, H', W']`` in [0, 1].
    Worker re-seeding as :class:`DetectionTransform`."""

    def __call__(self, image: np.ndarray) -> Tensor:  # type: ignore[override]
        if self.transforms:
            if self._seeded_in != _process_key():
                self.set_random_seed(torch.initial_seed() % 2**32)
            image = self.compose(image=image)["image"]
        return image_to_tensor(image)


def classification_train_transform(
    image_size: int, scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True, augment: bool = True
) -> ImageTransform:
    """Inception-style training crops (torchvision's and timm's ``RandomResizedCrop``): a random area
    ``scale`` of the image at an aspect ratio in [3/4, 4/3], resized to ``image_size``, then flipped with
    ``hflip``. ``augment=False``: the evaluation pipeline (:func:`classification_eval_transform`).

    Example:
        >>> import numpy as np
        >>> tuple(classification_train_transform(64)(np.zeros((48, 80, 3), np.uint8)).shape)
        (3, 64, 64)
    """
    _check_size(image_size)
    if not augment:
        return classification_eval_transform(image_size)
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"crop scale must be (low, high) with 0 < low <= high <= 1, e.g. (0.08, 1.0), got {scale}")
    transforms: list[A.BasicTransform] = [A.RandomResizedCrop((image_size, image_size), scale=(low, high))]
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    return ImageTransform(transforms)


def classification_eval_transform(image_size: int, crop_fraction: float = 0.875) -> ImageTransform:
    """Resize the shorter side to ``image_size / crop_fraction``, then center crop ``image_size`` (the
    ImageNet evaluation of torchvision and timm: 256 then 224).

    Example:
        >>> import numpy as np
        >>> tuple(classification_eval_transform(64)(np.zeros((48, 80, 3), np.uint8)).shape)
        (3, 64, 64)
    """
    _check_size(image_size)
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], e.g. 0.875, got {crop_fraction}")
    resize = A.SmallestMaxSize(max_size=round(image_size / crop_fraction), interpolation=cv2.INTER_LINEAR)
    return ImageTransform([resize, A.CenterCrop(image_size, image_size)])


def _check_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
