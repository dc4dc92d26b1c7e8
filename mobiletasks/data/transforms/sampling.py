"""SSD's geometric sampling (Liu et al. 2016, section 2.2 "Data augmentation" and section 3.6): the zoom out
(:func:`sample_zoom_out`, the image on a canvas up to 4x its size) and the IoU-constrained patch sampler
(:func:`sample_iou_crop`, as torchvision's ``RandomIoUCrop``). Both draw from a numpy ``Generator`` and work in
whole pixels; the one-step :class:`SSDTransform` and the albumentations steps :class:`RandomZoomOut` and
:class:`IoURandomCrop` share them, so both draw the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# SSD paper section 2.2: "minimum jaccard overlap with the objects is 0.1, 0.3, 0.5, 0.7, or 0.9"; None = whole image
SSD_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)

Crop = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole pixels


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
    inside = centers_inside(boxes, crops)
    iw = np.clip(np.minimum(b[..., 2], c[..., 2]) - np.maximum(b[..., 0], c[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], c[..., 3]) - np.maximum(b[..., 1], c[..., 1]), 0, None)
    inter = iw * ih
    areas = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iou = inter / (areas + (c[..., 2] - c[..., 0]) * (c[..., 3] - c[..., 1]) - inter)
    return (inside & (iou >= min_iou)).any(axis=1)


def centers_inside(boxes: np.ndarray, crops: np.ndarray | Crop) -> np.ndarray:
    """Whether each box's center lies strictly inside the crop: [N] for one crop, [T, N] for crops [T, 4]."""
    c = np.asarray(crops)
    c = c[:, None, :] if c.ndim == 2 else c
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > c[..., 0]) & (cx < c[..., 2]) & (cy > c[..., 1]) & (cy < c[..., 3])
