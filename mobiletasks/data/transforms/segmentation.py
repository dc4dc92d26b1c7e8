"""DeepLab's training augmentation, as torchvision's references/segmentation: :func:`segmentation_train_transform`
scales by a random factor, pads to the crop size (mask padding 255, ignored), crops and flips, in one resize of
the source window the crop shows (:class:`RandomScaleCrop`); masks are resized nearest-neighbour, so they keep
their class indices.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from mobiletasks.common import IGNORE_INDEX
from mobiletasks.data.io import image_to_tensor
from mobiletasks.data.transforms.albumentations_pipelines import SegmentationTransform
from mobiletasks.data.transforms.common import MEAN_PIXEL, check_mask, pad


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
        mask = check_mask(image, mask)
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
        out, out_mask = pad(part, r0, c0, size, MEAN_PIXEL), pad(labels, r0, c0, size, IGNORE_INDEX)
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
