"""What the transforms of every task share: seeding per DataLoader worker (:class:`Seeded`), the mean pixel that
fills SSD's zoom-out canvas and DeepLab's padding (:data:`MEAN_PIXEL`, :func:`pad`), and the checks of their inputs.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

# ImageNet mean in 0..255: the SSD zoom-out canvas colour (SSD fills with the mean pixel)
MEAN_PIXEL = (124, 116, 104)


def _process_key() -> tuple[int, int | None]:
    info = torch.utils.data.get_worker_info()
    return (os.getpid(), None if info is None else info.id)


class Seeded:
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


def pad(part: np.ndarray, top: int, left: int, size: int, fill: tuple[int, ...] | int) -> np.ndarray:
    """``part`` at (``left``, ``top``) of a ``size x size`` canvas of ``fill``; ``part`` itself when it fills it."""
    height, width = part.shape[:2]
    if (height, width) == (size, size):
        return part
    border = (top, size - top - height, left, size - left - width)
    return cv2.copyMakeBorder(part, *border, cv2.BORDER_CONSTANT, value=fill)


def check_size(image_size: int) -> None:
    """Raise ``ValueError`` unless ``image_size`` is a positive whole number of pixels."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")


def check_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` as an array; ``ValueError`` when its shape is not the image's height and width."""
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match the image's {image.shape[:2]}")
    return mask
