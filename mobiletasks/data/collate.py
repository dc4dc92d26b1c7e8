"""Batching detection samples: images of different sizes stay a list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor


def detection_collate(
    batch: Sequence[tuple[Tensor, dict[str, Any]] | None],
) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...] -> ([image, ...], [target, ...])``.

    ``None`` entries (images a dataset could not read and skipped, see
    :class:`mobiletasks.data.detection.DetectionDataset`) are left out, so a batch may be shorter than
    the batch size, or empty.

    Example:
        >>> import torch
        >>> images, targets = detection_collate([(torch.zeros(3, 4, 5), {"image_id": 1}), None])
        >>> len(images), targets
        (1, [{'image_id': 1}])
    """
    samples = [sample for sample in batch if sample is not None]
    return [image for image, _ in samples], [target for _, target in samples]
