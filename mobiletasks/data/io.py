"""Reading images: EXIF orientation applied, every PIL mode converted to RGB, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

PathLike = str | Path


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded; the message names the file."""


def read_image(path: PathLike) -> np.ndarray:
    """The image at ``path`` as a uint8 array [H, W, 3], RGB, upright.

    The EXIF orientation tag is applied (``PIL.ImageOps.exif_transpose``), so ``H, W`` are the size a
    photo viewer shows. Grayscale, RGBA (alpha dropped), CMYK, palette and 16-bit images become RGB.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so that a truncated file fails here
            upright = ImageOps.exif_transpose(img)
            rgb = _to_rgb(upright)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return np.asarray(rgb, dtype=np.uint8).copy()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale (PNG): scale to 8 bits instead of clipping
        arr = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL asks for RGBA first when a palette has transparency
    return img.convert("RGB")


def image_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] -> float32 Tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
