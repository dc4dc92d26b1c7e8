"""Augmentations: detection (SSD), segmentation (DeepLab) and classification. The only module that imports
albumentations.

SSD paper (Liu et al. 2016, section 2.2 "Data augmentation" and section 3.6), in this order:
photometric distortion, zoom out (the image on a mean-filled canvas up to 4x its size, probability 0.5),
an IoU-constrained random crop, horizontal flip, resize to ``image_size x image_size``.

:class:`SSDTransform` (what :func:`train_transform` builds) draws these parameters as that step-by-step chain
does, then makes the output in one step: the source pixels the crop shows are resized straight to their place
in the output, the rest is the mean pixel, and the photometric distortion runs on those resized pixels alone. So
the zoom-out canvas (up to 2560x1920 for a COCO photo) is never built and no step touches more than
``image_size**2`` pixels. Where the crop lies inside the image (no zoom out, or a crop of the canvas that misses
the fill) the output is the very ``cv2.resize`` of the crop that the chain made; where it shows fill, the image
part is placed to the nearest output pixel (up to half a pixel off the chain's placement; the boxes follow the
pixels exactly). The step-by-step chain stays available as :class:`RandomZoomOut` and :class:`IoURandomCrop`,
albumentations transforms for :class:`DetectionTransform` pipelines, and shares its samplers with
:class:`SSDTransform`. Boxes are xyxy pixels; a box under one pixel wide or high (``min_size``), measured after
each step as albumentations' ``BboxParams`` does, is dropped, and the transform returns the indices of the boxes
it kept, so the caller gathers labels, ``difficult`` flags and anything else per box and counts what was dropped.

Evaluation images are not transformed at all (:func:`eval_transform`): the model resizes internally and
reports boxes in original pixels.

Segmentation (DeepLab, as torchvision's references/segmentation): :func:`segmentation_train_transform`
scales by a random factor, pads to the crop size (mask padding 255, ignored), crops and flips, in one resize of
the source window the crop shows (:class:`RandomScaleCrop`); masks are resized nearest-neighbour, so they keep
their class indices.
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

from mobiletasks.common import IGNORE_INDEX
from mobiletasks.data.io import image_to_tensor

# ImageNet mean in 0..255: the SSD zoom-out canvas colour (SSD fills with the mean pixel)
MEAN_PIXEL = (124, 116, 104)
# SSD paper section 2.2: "minimum jaccard overlap with the objects is 0.1, 0.3, 0.5, 0.7, or 0.9"; None = whole image
SSD_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
# SSD's photometric distortion (the Caffe SSD and torchvision's RandomPhotometricDistort): brightness +-32,
# contrast and saturation x[0.5, 1.5], hue +-18 degrees; brightness and the other three each with probability 0.5
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18 / 360  # of a full turn

Crop = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole pixels
Distortion = list[tuple[str, float]]  # ("brightness" | "contrast" | "saturation" | "hue", amount), in order


# ---------------------------------------------------------------------------------------------- seeding


def _process_key() -> tuple[int, int | None]:
    info = torch.utils.data.get_worker_info()
    return (os.getpid(), None if info is None else info.id)


class _Seeded:
    """``set_random_seed`` seeds the transform for this process; each DataLoader worker re-seeds it from
    ``torch.initial_seed()`` on its first sample, so workers draw different augmentations and
    ``lightning.seed_everything`` makes runs repeatable."""

    _seeded_in: tuple[int, int | None] | None = None

    def set_random_seed(self, seed: int) -> None:
        """Seed the pipeline (for this process; workers otherwise seed themselves)."""
        self._seed(seed)
        self._seeded_in = _process_key()

    def _seed(self, seed: int) -> None:
        raise NotImplementedError

    def _seed_in_worker(self) -> None:
        if self._seeded_in != _process_key():
            self.set_random_seed(torch.initial_seed() % 2**32)


# ---------------------------------------------------------------------------------------------- SSD sampling


def sample_zoom_out(rng: np.random.Generator, height: int, width: int, max_scale: float) -> tuple[int, int, int, int]:
    """SSD's zoom out: ``(canvas height, canvas width, top, left)`` of a canvas ``s ~ U(1, max_scale)`` times
    the image's size with the image at ``(left, top)``, uniformly placed in whole pixels."""
    scale = rng.uniform(1.0, max_scale)
    canvas_h, canvas_w = int(height * scale), int(width * scale)
    return canvas_h, canvas_w, int(rng.integers(0, canvas_h - height + 1)), int(rng.integers(0, canvas_w - width + 1))


def sample_iou_crop(
    rng: np.random.Generator,
    height: int,
    width: int,
    boxes: np.ndarray,
    min_ious: Sequence[float | None] = SSD_MIN_IOUS,
    scale: tuple[float, float] = (0.3, 1.0),
    aspect_ratio: tuple[float, float] = (0.5, 2.0),
    trials: int = 50,
) -> Crop:
    """The SSD paper's patch sampler (section 2.2), as torchvision's ``RandomIoUCrop``, on a ``height x width``
    image with ``boxes`` (xyxy pixels).

    Pick a minimum IoU from ``min_ious`` (``None``: keep the whole image); try up to ``trials`` patches of
    ``scale`` x the image's sides with width/height ratio in ``aspect_ratio``; accept the first whose IoU with
    some box whose center lies inside it reaches the minimum. An image without boxes takes any patch. The
    ``trials`` patches of one minimum are drawn and tested at once; the first that passes is the one taken.
    """
    whole = (0, 0, width, height)
    for _ in range(trials):  # torchvision loops until a mode succeeds; bounded here
        min_iou = min_ious[int(rng.integers(len(min_ious)))]
        if min_iou is None:
            return whole
        draws = rng.random((trials, 4))
        new_w = (width * (scale[0] + (scale[1] - scale[0]) * draws[:, 0])).astype(np.int64)
        new_h = (height * (scale[0] + (scale[1] - scale[0]) * draws[:, 1])).astype(np.int64)
        left = ((width - new_w) * draws[:, 2]).astype(np.int64)
        top = ((height - new_h) * draws[:, 3]).astype(np.int64)
        crops = np.stack([left, top, left + new_w, top + new_h], axis=1)
        ratio = new_w / np.maximum(new_h, 1)
        ok = (new_w >= 1) & (new_h >= 1) & (ratio >= aspect_ratio[0]) & (ratio <= aspect_ratio[1])
        ok &= _accepts(crops, boxes, min_iou)
        if ok.any():
            x0, y0, x1, y1 = crops[int(np.argmax(ok))].tolist()
            return (x0, y0, x1, y1)
    return whole


def _accepts(crops: np.ndarray, boxes: np.ndarray, min_iou: float) -> np.ndarray:
    """For each crop [T, 4]: does a box [N, 4] whose center lies inside it overlap it with IoU >= ``min_iou``?"""
    if len(boxes) == 0:
        return np.ones(len(crops), dtype=bool)
    c, b = crops[:, None, :], boxes[None, :, :]
    inside = _centers_inside(boxes, crops)
    iw = np.clip(np.minimum(b[..., 2], c[..., 2]) - np.maximum(b[..., 0], c[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], c[..., 3]) - np.maximum(b[..., 1], c[..., 1]), 0, None)
    inter = iw * ih
    areas = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iou = inter / (areas + (c[..., 2] - c[..., 0]) * (c[..., 3] - c[..., 1]) - inter)
    return (inside & (iou >= min_iou)).any(axis=1)


def _centers_inside(boxes: np.ndarray, crops: np.ndarray | Crop) -> np.ndarray:
    """Whether each box's center lies strictly inside the crop: [N] for one crop, [T, N] for crops [T, 4]."""
    c = np.asarray(crops)
    c = c[:, None, :] if c.ndim == 2 else c
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > c[..., 0]) & (cx < c[..., 2]) & (cy > c[..., 1]) & (cy < c[..., 3])


def _big_enough(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """albumentations' ``filter_bboxes`` on clipped boxes: at least ``min_size`` wide and high and
    ``min_size**2`` in area (with its 1e-7 slack), and not empty."""
    eps = 1e-7
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (w >= min_size - eps) & (h >= min_size - eps) & (w * h >= max(min_size * min_size - eps, eps))


def sample_distortion(rng: np.random.Generator) -> Distortion:
    """SSD's photometric distortion as the old albumentations chain drew it: brightness (probability 0.5),
    then (probability 0.5) contrast, saturation and hue in a random order."""
    steps: Distortion = []
    if rng.random() < 0.5:
        steps.append(("brightness", rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)))
    if rng.random() < 0.5:
        jitter = [
            ("contrast", rng.uniform(*CONTRAST_RANGE)),
            ("saturation", rng.uniform(*SATURATION_RANGE)),
            ("hue", rng.uniform(-HUE_DELTA, HUE_DELTA)),
        ]
        steps += [jitter[i] for i in rng.permutation(len(jitter))]
    return steps


# ---------------------------------------------------------------------------------------------- photometric


def distort(image: np.ndarray, steps: Distortion, reference: np.ndarray | None = None) -> np.ndarray:
    """``image`` (uint8 RGB) through the photometric ``steps``, as albumentations' ``RandomBrightnessContrast``
    and ``ColorJitter`` compute them on uint8 (clipped lookup tables, ``cv2.addWeighted``, hue in OpenCV's HSV).

    Contrast pivots on the gray mean of ``reference`` (default ``image``) taken through the steps before it: pass
    the whole photo (a subsample is enough) when ``image`` is a part of it. Brightness and contrast in a row are one
    lookup table. Returns a new array (or ``image`` itself when there are no steps).
    """
    kinds = [kind for kind, _ in steps]
    pivot = 0.0
    if "contrast" in kinds:
        ref = image if reference is None else reference
        for kind, amount in steps[: kinds.index("contrast")]:
            ref = _distort_one(ref, kind, amount, pivot)
        pivot = float(cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).mean())
    lut: np.ndarray | None = None
    for kind, amount in steps:
        if kind in ("brightness", "contrast"):
            step = _tone_lut(kind, amount, pivot)
            lut = step if lut is None else step[lut]
            continue
        if lut is not None:
            image, lut = cv2.LUT(image, lut), None
        image = _distort_one(image, kind, amount, pivot)
    return image if lut is None else cv2.LUT(image, lut)


def _distort_one(image: np.ndarray, kind: str, amount: float, pivot: float) -> np.ndarray:
    if kind in ("brightness", "contrast"):
        return cv2.LUT(image, _tone_lut(kind, amount, pivot))
    if kind == "saturation":  # blend with the gray image (torchvision's adjust_saturation)
        gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        return cv2.addWeighted(image, amount, gray, 1 - amount, 0)
    # hue: a turn of OpenCV's 0..180 hue channel, the other two channels unchanged
    identity = np.arange(256)
    hue = np.mod(identity + 180 * amount, 180).astype(np.uint8)
    lut = np.stack([hue, identity.astype(np.uint8), identity.astype(np.uint8)], axis=-1)[None]
    return cv2.cvtColor(cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), lut), cv2.COLOR_HSV2RGB)


def _tone_lut(kind: str, amount: float, pivot: float) -> np.ndarray:
    """The lookup table of a brightness shift by ``amount`` or a contrast scaling by ``amount`` about ``pivot``."""
    return _affine_lut(1.0, amount) if kind == "brightness" else _affine_lut(amount, pivot * (1 - amount))


def _affine_lut(scale: float, shift: float) -> np.ndarray:
    """uint8 ``x -> clip(x * scale + shift)``, truncated as albucore's ``multiply_add`` does."""
    return np.clip(np.arange(256, dtype=np.float32) * scale + shift, 0, 255).astype(np.uint8)


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
        kept = bboxes[_centers_inside(pixels, crop_coords)]
        return super().apply_to_bboxes(kept, crop_coords, **params)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "scale", "aspect_ratio", "trials")


class DetectionTransform(_Seeded):
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


class SSDTransform(DetectionTransform):
    """SSD's training augmentation, with :class:`DetectionTransform`'s contract, made in one resize.

    Draws, as the albumentations chain ``RandomBrightnessContrast, ColorJitter, RandomZoomOut, IoURandomCrop,
    HorizontalFlip, Resize`` did: the photometric distortion (``photometric``), a zoom out with probability
    ``zoom_out`` to a canvas up to ``max_zoom`` times the image, an IoU crop of the canvas (:func:`sample_iou_crop`
    with ``min_ious``, ``crop_scale``, ``aspect_ratio``, ``trials``) and a horizontal flip with probability
    ``flip``. Then it resizes the part of the image that the crop shows to its place in the ``image_size`` square
    (the rest is :data:`MEAN_PIXEL`), distorts those pixels alone and flips. Boxes are clipped to the image, cut
    to the crop (only those whose centers lie inside it stay) and dropped when under ``min_size`` pixels wide or
    high in the image, in the crop or in the output, as albumentations checks after each step.

    With everything off (``photometric=False, zoom_out=0, min_ious=(None,), flip=0``) it is a plain resize.
    """

    def __init__(
        self,
        image_size: int,
        *,
        photometric: bool = True,
        zoom_out: float = 0.5,
        max_zoom: float = 4.0,
        min_ious: Sequence[float | None] = SSD_MIN_IOUS,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        aspect_ratio: tuple[float, float] = (0.5, 2.0),
        trials: int = 50,
        flip: float = 0.5,
        min_size: float = 1.0,
    ) -> None:
        _check_size(image_size)
        if not 0 <= zoom_out <= 1 or not 0 <= flip <= 1 or max_zoom < 1:
            raise ValueError(
                f"zoom_out and flip are probabilities in [0, 1] and max_zoom >= 1, got zoom_out={zoom_out}, "
                f"flip={flip}, max_zoom={max_zoom}"
            )
        super().__init__((), min_size)
        self.image_size = image_size
        self.photometric = photometric
        self.zoom_out, self.max_zoom, self.flip = zoom_out, max_zoom, flip
        self.min_ious, self.trials = tuple(min_ious), trials
        self.crop_scale, self.aspect_ratio = crop_scale, aspect_ratio
        self.rng = np.random.default_rng()

    def _seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, boxes: np.ndarray | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self._seed_in_worker()
        rng, size, min_size = self.rng, self.image_size, self.min_size
        height, width = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        keep = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        boxes = np.clip(boxes[keep], 0, np.array([width, height, width, height], np.float32))
        fits = _big_enough(boxes, min_size)
        keep, boxes = keep[fits], boxes[fits]

        steps = sample_distortion(rng) if self.photometric else []
        canvas_h, canvas_w, top, left = height, width, 0, 0
        if rng.random() < self.zoom_out:
            canvas_h, canvas_w, top, left = sample_zoom_out(rng, height, width, self.max_zoom)
        boxes += np.array([left, top, left, top], np.float32)  # canvas pixels
        crop = sample_iou_crop(
            rng, canvas_h, canvas_w, boxes, self.min_ious, self.crop_scale, self.aspect_ratio, self.trials
        )
        flip = rng.random() < self.flip

        x0, y0, x1, y1 = crop
        inside = _centers_inside(boxes, crop)
        keep, boxes = keep[inside], boxes[inside] - np.array([x0, y0, x0, y0], np.float32)  # crop pixels
        boxes = np.clip(boxes, 0, np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float32))
        fits = _big_enough(boxes, min_size)
        keep, boxes = keep[fits], boxes[fits]

        # the source window the crop shows, [sx0, sx1) x [sy0, sy1), lands on output [u0, u1) x [v0, v1)
        sx0, sy0, sx1, sy1 = max(x0 - left, 0), max(y0 - top, 0), min(x1 - left, width), min(y1 - top, height)
        fx, fy = size / (x1 - x0), size / (y1 - y0)
        u0, u1 = round((sx0 + left - x0) * fx), round((sx1 + left - x0) * fx)
        v0, v1 = round((sy0 + top - y0) * fy), round((sy1 + top - y0) * fy)
        if u1 > u0 and v1 > v0:
            part = cv2.resize(image[sy0:sy1, sx0:sx1], (u1 - u0, v1 - v0), interpolation=cv2.INTER_LINEAR)
            out = _pad(_distorted(part, steps, image), v0, u0, size, MEAN_PIXEL)
        else:  # the crop shows only the fill
            out = np.full((size, size, 3), MEAN_PIXEL, np.uint8)
        if len(boxes):  # crop pixels -> output pixels, as the image window was mapped
            px0, py0 = sx0 + left - x0, sy0 + top - y0
            scale = np.array([(u1 - u0) / (sx1 - sx0), (v1 - v0) / (sy1 - sy0)] * 2, np.float32)
            boxes = (boxes - np.array([px0, py0, px0, py0], np.float32)) * scale + np.array([u0, v0, u0, v0])
            boxes = np.clip(boxes, 0, size).astype(np.float32)
            fits = _big_enough(boxes, min_size)
            keep, boxes = keep[fits], boxes[fits]
        if flip:
            out = cv2.flip(out, 1)
            boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
        return image_to_tensor(out), torch.from_numpy(np.ascontiguousarray(boxes)), torch.from_numpy(keep)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, photometric={self.photometric}, "
            f"zoom_out={self.zoom_out}, max_zoom={self.max_zoom}, min_ious={self.min_ious}, flip={self.flip})"
        )


def _pad(part: np.ndarray, top: int, left: int, size: int, fill: tuple[int, ...] | int) -> np.ndarray:
    """``part`` at (``left``, ``top``) of a ``size x size`` canvas of ``fill``; ``part`` itself when it fills it."""
    height, width = part.shape[:2]
    if (height, width) == (size, size):
        return part
    border = (top, size - top - height, left, size - left - width)
    return cv2.copyMakeBorder(part, *border, cv2.BORDER_CONSTANT, value=fill)


def _distorted(part: np.ndarray, steps: Distortion, image: np.ndarray, side: int = 160) -> np.ndarray:
    """``part`` of ``image`` (resized) through the photometric ``steps``; contrast pivots on the mean of every k-th
    pixel of ``image`` each way, about ``side`` pixels on its shorter side (within a gray level of the full mean)."""
    if not steps:
        return part
    height, width = image.shape[:2]
    step = max(1, min(height, width) // side)
    return distort(part, steps, cv2.resize(image, (width // step, height // step), interpolation=cv2.INTER_NEAREST))


def train_transform(image_size: int, augment: bool = True) -> SSDTransform:
    """The SSD training pipeline ending in a ``image_size x image_size`` image; ``augment=False``: resize only.

    Example:
        >>> import numpy as np
        >>> t = train_transform(64)
        >>> image, boxes, keep = t(np.zeros((48, 80, 3), np.uint8), np.array([[10.0, 10.0, 40.0, 30.0]]))
        >>> tuple(image.shape)
        (3, 64, 64)
    """
    if not augment:
        return SSDTransform(image_size, photometric=False, zoom_out=0.0, min_ious=(None,), flip=0.0)
    return SSDTransform(image_size)


def eval_transform() -> DetectionTransform:
    """No transform: evaluation and prediction images keep their original size."""
    return DetectionTransform([])


# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationTransform(_Seeded):
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
        mask = _check_mask(image, mask)
        if self.transforms:
            self._seed_in_worker()
            out = self.compose(image=image, mask=mask.astype(np.uint8))  # cv2 warps uint8 masks; values <= 255
            image, mask = out["image"], out["mask"]
        return image_to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"{type(self).__name__}({names})"


def _check_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match the image's {image.shape[:2]}")
    return mask


class RandomScaleCrop(SegmentationTransform):
    """DeepLab's training augmentation, with :class:`SegmentationTransform`'s contract, made in one resize.

    Draws, as the albumentations chain ``RandomScale, PadIfNeeded, RandomCrop, HorizontalFlip`` did: a scale
    ``s ~ U(scale_range)`` (the image becomes ``int(H * s) x int(W * s)``), padding to ``crop_size`` on each side
    that is shorter (centered: the image with :data:`MEAN_PIXEL`, the mask with 255, ignored), a ``crop_size``
    square crop (random, or centered with ``random_crop=False``) and a horizontal flip with probability ``flip``.
    Then it resizes only the source window that the crop shows, bilinear for the image and nearest-neighbour (as
    ``cv2.INTER_NEAREST``) for the mask, and pads that. The window's edges are the crop's, rounded to whole source
    pixels (up to half a source pixel off the chain's, which resized the whole image first); image and mask share
    the window, so they stay aligned as before. At scale 1 the window is exact.
    """

    def __init__(
        self,
        crop_size: int,
        scale_range: tuple[float, float] = (0.5, 2.0),
        *,
        random_crop: bool = True,
        flip: float = 0.5,
    ) -> None:
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size must be a positive number of pixels, got {crop_size!r}")
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, e.g. (0.5, 2.0), got {scale_range}"
            )
        if not 0 <= flip <= 1:
            raise ValueError(f"flip is a probability in [0, 1], got {flip}")
        super().__init__()
        self.crop_size, self.scale_range, self.random_crop, self.flip = crop_size, (low, high), random_crop, flip
        self.rng = np.random.default_rng()

    def _seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        mask = _check_mask(image, mask)
        self._seed_in_worker()
        rng, size = self.rng, self.crop_size
        height, width = image.shape[:2]
        scale = rng.uniform(*self.scale_range)
        scaled_h, scaled_w = max(1, int(height * scale)), max(1, int(width * scale))
        pad_top, pad_left = max(0, int((size - scaled_h) / 2)), max(0, int((size - scaled_w) / 2))
        padded_h, padded_w = max(scaled_h, size), max(scaled_w, size)
        if self.random_crop:  # albumentations' RandomCrop: the start drawn in [0, padded - size], height first
            y0 = int((padded_h - size + 1) * rng.random())
            x0 = int((padded_w - size + 1) * rng.random())
        else:
            y0, x0 = (padded_h - size) // 2, (padded_w - size) // 2
        flip = rng.random() < self.flip

        # the crop shows scaled rows [k0, k1) and columns [l0, l1), at output row k0 + pad_top - y0, ...
        k0, k1 = max(0, y0 - pad_top), min(scaled_h, y0 - pad_top + size)
        l0, l1 = max(0, x0 - pad_left), min(scaled_w, x0 - pad_left + size)
        r0, c0 = k0 + pad_top - y0, l0 + pad_left - x0
        rows = _source_span(k0, k1, height / scaled_h, height)
        cols = _source_span(l0, l1, width / scaled_w, width)
        part_size = (l1 - l0, k1 - k0)
        part = cv2.resize(image[rows, cols], part_size, interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(mask[rows, cols].astype(np.uint8, copy=False), part_size, interpolation=cv2.INTER_NEAREST)
        out, out_mask = _pad(part, r0, c0, size, MEAN_PIXEL), _pad(labels, r0, c0, size, IGNORE_INDEX)
        if flip:
            out, out_mask = cv2.flip(out, 1), cv2.flip(out_mask, 1)
        return image_to_tensor(out), torch.from_numpy(out_mask).long()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop_size={self.crop_size}, scale_range={self.scale_range}, "
            f"random_crop={self.random_crop}, flip={self.flip})"
        )


def _source_span(start: int, stop: int, ratio: float, limit: int) -> slice:
    """Source pixels under scaled pixels [start, stop) (``ratio`` source pixels each), rounded to whole pixels."""
    first = min(round(start * ratio), limit - 1)
    return slice(first, min(max(round(stop * ratio), first + 1), limit))


def segmentation_train_transform(
    crop_size: int, scale_range: tuple[float, float] = (0.5, 2.0), augment: bool = True
) -> RandomScaleCrop:
    """DeepLab's training pipeline (torchvision's references/segmentation): random scale in ``scale_range``,
    pad to ``crop_size`` (image with the mean pixel, mask with 255), random ``crop_size`` square crop,
    horizontal flip (:class:`RandomScaleCrop`). Masks are resized nearest-neighbour. ``augment=False``: pad and
    center crop only.

    Example:
        >>> import numpy as np
        >>> t = segmentation_train_transform(64)
        >>> image, mask = t(np.zeros((48, 80, 3), np.uint8), np.ones((48, 80), np.uint8))
        >>> tuple(image.shape), tuple(mask.shape), mask.dtype
        ((3, 64, 64), (64, 64), torch.int64)
    """
    transform = RandomScaleCrop(crop_size, scale_range)
    return transform if augment else RandomScaleCrop(crop_size, (1.0, 1.0), random_crop=False, flip=0.0)


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
