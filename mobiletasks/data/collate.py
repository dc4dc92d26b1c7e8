"""Batching samples: detection images of different sizes stay a list; segmentation images are padded into one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mobiletasks.common import IGNORE_INDEX


def detection_collate(
    batch: Sequence[tuple[Tensor, dict[str, Any]] | None],
) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...] -> ([image, ...], [target, ...])``.

    ``None`` entries (images a dataset could not read and skipped, see
    :class:`mobiletasks.data.detection.base.DetectionDataset`) are left out, so a batch may be shorter than
    the batch size, or empty.

    Example:
        >>> import torch
        >>> images, targets = detection_collate([(torch.zeros(3, 4, 5), {"image_id": 1}), None])
        >>> len(images), targets
        (1, [{'image_id': 1}])
    """
    samples = [sample for sample in batch if sample is not None]
    return [image for image, _ in samples], [target for _, target in samples]


def segmentation_collate(
    batch: Sequence[tuple[Tensor, dict[str, Any]] | None],
) -> tuple[Tensor, list[dict[str, Any]]]:
    """``[(image, target), ...] -> (images Tensor[B, 3, H, W], [target, ...])``.

    Images are zero-padded at the bottom and right to the largest height and width of the batch; each
    target's ``mask`` (when it has one) is padded with 255 (ignored) to the same size, so masks stack.
    Every target gains ``size``: the unpadded ``(height, width)``. ``None`` entries (unreadable images)
    are left out, as in :func:`detection_collate`; an empty batch gives ``images`` of shape [0, 3, 0, 0].
    The input targets are not modified.

    Example:
        >>> import torch
        >>> images, targets = segmentation_collate(
        ...     [(torch.ones(3, 2, 3), {"mask": torch.zeros(2, 3, dtype=torch.long)}),
        ...      (torch.ones(3, 4, 1), {"mask": torch.ones(4, 1, dtype=torch.long)}), None])
        >>> tuple(images.shape), targets[0]["size"], targets[0]["mask"][:, -1].tolist()
        ((2, 3, 4, 3), (2, 3), [0, 0, 255, 255])
    """
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return torch.zeros(0, 3, 0, 0), []
    height = max(int(image.shape[-2]) for image, _ in samples)
    width = max(int(image.shape[-1]) for image, _ in samples)
    images = samples[0][0].new_zeros(len(samples), samples[0][0].shape[0], height, width)
    targets = []
    for k, (image, target) in enumerate(samples):
        h, w = int(image.shape[-2]), int(image.shape[-1])
        images[k, :, :h, :w] = image
        target = {**target, "size": (h, w)}
        mask = target.get("mask")
        if mask is not None:
            if tuple(mask.shape) != (h, w):
                raise ValueError(f"sample {target.get('file_name', k)}: mask {tuple(mask.shape)} but image {(h, w)}")
            padded = mask.new_full((height, width), IGNORE_INDEX)
            padded[:h, :w] = mask
            target["mask"] = padded
        targets.append(target)
    return images, targets


def classification_collate(
    batch: Sequence[tuple[Tensor, dict[str, Any]] | None],
) -> tuple[Tensor, dict[str, Any]]:
    """``[(image, target), ...] -> (images Tensor[B, 3, S, S], {"labels": Tensor[B] or [B, K], "file_name":
    [...], "index": Tensor[B]})``; ``labels`` only when every sample has them. ``None`` entries (unreadable
    images) are left out; an empty batch gives images of shape [0, 3, 0, 0].

    Example:
        >>> import torch
        >>> images, targets = classification_collate(
        ...     [(torch.zeros(3, 4, 4), {"file_name": "a.jpg", "index": 0, "labels": torch.tensor(2)}), None])
        >>> tuple(images.shape), targets["labels"].tolist(), targets["file_name"]
        ((1, 3, 4, 4), [2], ['a.jpg'])
    """
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return torch.zeros(0, 3, 0, 0), {"file_name": [], "index": torch.zeros(0, dtype=torch.long)}
    targets: dict[str, Any] = {
        "file_name": [t["file_name"] for _, t in samples],
        "index": torch.tensor([t["index"] for _, t in samples]),
    }
    if all("labels" in t for _, t in samples):
        targets["labels"] = torch.stack([t["labels"] for _, t in samples])
    return torch.stack([image for image, _ in samples]), targets
