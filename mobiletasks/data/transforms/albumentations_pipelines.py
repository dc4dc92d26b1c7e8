"""The albumentations pipelines: the only module in mobiletasks that imports albumentations.

:class:`DetectionTransform`, :class:`SegmentationTransform` and :class:`ImageTransform` run an albumentations
pipeline on one sample. :class:`RandomZoomOut` and :class:`IoURandomCrop` are SSD's zoom out and IoU crop (SSD paper
sections 2.2 and 3.6) as albumentations steps: the step-by-step chain that
:class:`~mobiletasks.data.transforms.detection.SSDTransform` replaces, drawing from the same samplers
(:mod:`~mobiletasks.data.transforms.sampling`). The classification pipelines are torchvision's and timm's:
Inception-style ``RandomResizedCrop`` for training, resize and center crop for evaluation.
"""

from __future__ import annotations

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

from mobiletasks.data.io import image_to_tensor
from mobiletasks.data.transforms.common import MEAN_PIXEL, Seeded, check_mask, check_size
from mobiletasks.data.transforms.sampling import SSD_MIN_IOUS, Crop, centers_inside, sample_iou_crop, sample_zoom_out

# ---------------------------------------------------------------------------------------------- detection


class RandomZoomOut(A.Pad):
    """Place the image at a random position on a canvas ``s`` times its size, ``s ~ U(1, max_scale)``.

    The "expand" / zoom-out step of SSD (paper section 3.6): small objects for the small-scale layers.
    Boxes shift with the image; the canvas is filled with ``fill`` (the mean pixel). :class:`SSDTransform`
    draws the same zoom without building the canvas.
    """

    class InitSchema(BaseTransformInitSchema):
        max_scale: float = Field(ge=1.0)
        fill: tuple[float, ...] | float

    def __init__(self, max_scale: float = 4.0, fill: tuple[float, ...] | float = MEAN_PIXEL, p: float = 0.5):
        super().__init__(padding=0, fill=fill, p=p)
        self.max_scale = max_scale

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        canvas_h, canvas_w, top, left = sample_zoom_out(self.random_generator, height, width, self.max_scale)
        return {
            "pad_top": top,
            "pad_bottom": canvas_h - height - top,
            "pad_left": left,
            "pad_right": canvas_w - width - left,
        }

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_scale", "fill")


class IoURandomCrop(BaseCrop):
    """The SSD paper's patch sampler (:func:`sample_iou_crop`) as an albumentations crop. Boxes whose centers fall
    outside the patch are removed; the others are cut to it."""

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
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))
        boxes = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        crop = sample_iou_crop(
            self.random_generator, height, width, boxes, self.min_ious, self.scale, self.aspect_ratio, self.trials
        )
        return {"crop_coords": crop}

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: Crop, **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        pixels = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        kept = bboxes[centers_inside(pixels, crop_coords)]
        return super().apply_to_bboxes(kept, crop_coords, **params)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "scale", "aspect_ratio", "trials")


class DetectionTransform(Seeded):
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
        self.min_size = min_size
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=["indices"],
            clip=True,
            min_area=min_size * min_size,
            min_width=min_size,
            min_height=min_size,
        )
        # no transforms: no pipeline (albumentations warns about a box processor with nothing to process)
        self.compose = A.Compose(self.transforms, bbox_params=bbox_params) if self.transforms else None

    def _seed(self, seed: int) -> None:
        if self.compose is not None:
            self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, boxes: np.ndarray | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if self.compose is None:
            return image_to_tensor(image), torch.from_numpy(boxes.copy()), torch.arange(len(boxes))
        self._seed_in_worker()
        valid = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        out = self.compose(image=image, bboxes=boxes[valid], indices=valid)
        kept = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        keep = np.asarray(out["indices"], dtype=np.int64).reshape(-1)
        return image_to_tensor(out["image"]), torch.from_numpy(kept), torch.from_numpy(keep)

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"{type(self).__name__}({names})"


# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationTransform(Seeded):
    """An albumentations pipeline on one segmentation sample: image and mask move together.

    ``transform(image, mask) -> (image_tensor, mask_tensor)``: ``image`` uint8 [H, W, 3], ``mask`` integer
    [H, W] of class indices (0..255); returns a float32 Tensor [3, H', W'] in [0, 1] and an int64 Tensor
    [H', W']. No transforms: both pass unchanged. Worker re-seeding as :class:`DetectionTransform`.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform] = ()) -> None:
        self.transforms = list(transforms)
        self.compose = A.Compose(self.transforms)

    def _seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        mask = check_mask(image, mask)
        if self.transforms:
            self._seed_in_worker()
            out = self.compose(image=image, mask=mask.astype(np.uint8))  # cv2 warps uint8 masks; values <= 255
            image, mask = out["image"], out["mask"]
        return image_to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"{type(self).__name__}({names})"


# ---------------------------------------------------------------------------------------------- classification


class ImageTransform(SegmentationTransform):
    """An albumentations pipeline on an image alone: ``transform(image) -> Tensor [3, H', W']`` in [0, 1].
    Worker re-seeding as :class:`DetectionTransform`."""

    def __call__(self, image: np.ndarray) -> Tensor:  # type: ignore[override]
        if self.transforms:
            self._seed_in_worker()
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
    check_size(image_size)
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
    check_size(image_size)
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], e.g. 0.875, got {crop_fraction}")
    resize = A.SmallestMaxSize(max_size=round(image_size / crop_fraction), interpolation=cv2.INTER_LINEAR)
    return ImageTransform([resize, A.CenterCrop(image_size, image_size)])
