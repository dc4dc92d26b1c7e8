"""The input contract of every model ``create_model`` builds: RGB float images in [0, 1], normalized inside.

A model records its normalization as ``image_mean`` and ``image_std`` (the :class:`NormalizesInput` record) and
applies it in ``forward`` with :class:`Normalize`, whose buffers are not persistent: state dicts are those of
torchvision's and timm's networks, so their weight files load as they are. Backbones (``create_backbone``) take
normalized input: the model around them normalizes.

Example:
    >>> import torch
    >>> Normalize().image_mean, list(Normalize().state_dict())
    ((0.485, 0.456, 0.406), [])
    >>> Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(torch.ones(1, 3, 2, 2))[0, :, 0, 0]
    tensor([2., 2., 2.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .common import IMAGENET_MEAN, IMAGENET_STD, RGB

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RGB", "Normalize", "NormalizesInput", "rgb"]


@runtime_checkable
class NormalizesInput(Protocol):
    """A model that takes RGB float images in [0, 1] and feeds its network ``(x - image_mean) / image_std``."""

    image_mean: RGB
    image_std: RGB


def rgb(values: Sequence[float], name: str) -> RGB:
    """``values`` as a tuple of three floats (one per RGB channel); ``name`` is the argument, for the error."""
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"{name} needs one value per RGB channel (3), got {list(values)!r}")
    return out


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for ``x`` float ``[..., 3, H, W]`` in [0, 1] (batched or not).

    Args:
        mean, std: one value per RGB channel (default ImageNet's); every ``std`` positive.

    ``mean`` and ``std`` are buffers that follow ``.to()`` but stay out of the state dict; ``image_mean`` and
    ``image_std`` are the same values as tuples.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.image_mean, self.image_std = rgb(mean, "image_mean"), rgb(std, "image_std")
        if min(self.image_std) <= 0:
            raise ValueError(f"image_std must be positive per channel, got {list(std)!r}")
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(self.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.image_std).view(3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.image_mean}, std={self.image_std}"
