"""Names every layer shares: path types, the ignore index of masks, the ImageNet normalization, atomic writes.

The one module that every part of mobiletasks may import (it imports nothing of the package), so that no
layer reaches into another's task module for a general name. See ``docs/architecture.md``.

Example:
    >>> from mobiletasks.common import IGNORE_INDEX, IMAGENET_MEAN
    >>> IGNORE_INDEX, IMAGENET_MEAN
    (255, (0.485, 0.456, 0.406))
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "RGB", "PathLike", "replace_atomically"]

PathLike = str | Path  # a file or folder as a user gives it
RGB = tuple[float, float, float]

# the statistics of the ImageNet training images, as torchvision's and most of timm's weights expect them
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)

# the mask value that no loss or metric counts: padding, and the boundary band of VOC's masks
IGNORE_INDEX = 255


def replace_atomically(path: Path, write: Callable[[str], object]) -> None:
    """``write(name)`` a hidden temporary file beside ``path``, then ``os.replace`` it there, so that a reader never
    sees half a file; the temporary file is removed if writing fails."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
