"""SSD's training augmentation made in one resize (:class:`SSDTransform`) and the evaluation transform (none).

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
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from mobiletasks.data.io import image_to_tensor
from mobiletasks.data.transforms.albumentations_pipelines import DetectionTransform
from mobiletasks.data.transforms.common import MEAN_PIXEL, check_size, pad
from mobiletasks.data.transforms.photometric import Distortion, distort, sample_distortion
from mobiletasks.data.transforms.sampling import SSD_MIN_IOUS, centers_inside, sample_iou_crop, sample_zoom_out


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
        check_size(image_size)
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
        inside = centers_inside(boxes, crop)
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
            out = pad(_distorted(part, steps, image), v0, u0, size, MEAN_PIXEL)
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


def _big_enough(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """albumentations' ``filter_bboxes`` on clipped boxes: at least ``min_size`` wide and high and
    ``min_size**2`` in area (with its 1e-7 slack), and not empty."""
    eps = 1e-7
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (w >= min_size - eps) & (h >= min_size - eps) & (w * h >= max(min_size * min_size - eps, eps))


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
