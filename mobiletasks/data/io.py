"""Reading images (EXIF orientation applied, every PIL mode converted to RGB, clear errors) and writing PNGs
(through a rename, so a crash never leaves half a file), palette PNGs in the VOC colors included."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mobiletasks.common import PathLike, replace_atomically

logger = logging.getLogger(__name__)


def _image_suffixes() -> tuple[str, ...]:
    """The file suffixes of the formats Pillow opens (``.jfif``, ``.jpe``, ``.avif``, ... as well as ``.jpg``),
    except the ones it only identifies without decoding them (or needs another program for)."""
    Image.init()
    undecoded = {"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF", "FITS"}
    openable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in undecoded}
    return tuple(sorted(openable | {".jpg", ".jpeg", ".png"}))


IMAGE_SUFFIXES = _image_suffixes()


def split_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, any depth, sorted by path; images by their suffix, any case."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def list_images(folder: PathLike, what: str = "image folder") -> list[Path]:
    """Every image file under ``folder`` (by suffix, any case, any depth), sorted by path; an error when there is
    none. Other files are passed over with a warning that counts them and names a few."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} does not exist; pass a folder of images")
    paths, others = split_images(folder)
    if not paths:
        found = f"; it holds {len(others)} other files, e.g. {others[0].name}" if others else ""
        raise ValueError(f"{what} {folder} holds no images (files Pillow reads: .jpg, .png, .jfif, ...){found}")
    warn_passed_over(folder, others)
    return paths


def warn_passed_over(folder: Path, others: Sequence[Path]) -> None:
    """A warning for the files of ``folder`` that are not images by their suffix (hidden files not counted)."""
    shown = [p for p in others if not p.name.startswith(".")]
    if shown:
        names = ", ".join(p.relative_to(folder).as_posix() for p in shown[:3]) + (", ..." if len(shown) > 3 else "")
        logger.warning(
            "%s: %d files are not images Pillow reads (by suffix) and are passed over: %s", folder, len(shown), names
        )


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded; the message names the file."""


def read_image(path: PathLike) -> np.ndarray:
    """The image at ``path`` as a uint8 array [H, W, 3], RGB, upright.

    The EXIF orientation tag is applied (``PIL.ImageOps.exif_transpose``), so ``H, W`` are the size a
    photo viewer shows. Grayscale, RGBA (alpha dropped), CMYK, palette and 16-bit images become RGB.
    Upright RGB and grayscale JPEGs, most photos, are decoded by OpenCV (:func:`_read_upright_jpeg`); the same
    pixels, faster.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    image = _read_upright_jpeg(Path(path))
    if image is not None:
        return image
    with _decoded(path) as img:
        ImageOps.exif_transpose(img, in_place=True)  # nothing to do (and no copy) without an orientation tag
        return np.array(_to_rgb(img), dtype=np.uint8)  # Pillow's bytes, copied once into a writable array


_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
# what Pillow raises on a file it cannot read
_UNREADABLE = (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError)


def _read_upright_jpeg(path: Path) -> np.ndarray | None:
    """A JPEG that Pillow reads as RGB or grayscale without an orientation to apply, decoded by OpenCV; None for
    any other file, and for one OpenCV cannot decode in full (it declines truncated files), so that it goes the
    Pillow way, errors and all.

    Both decode with libjpeg-turbo's defaults (accurate integer DCT, smooth chroma upsampling), so the pixels are
    Pillow's (``tests/test_transforms.py`` compares them); OpenCV writes them straight into the array, where
    Pillow keeps 4-byte pixels and copies them out.
    """
    if path.suffix.lower() not in _JPEG_SUFFIXES:
        return None
    try:
        data = path.read_bytes()
        with Image.open(BytesIO(data)) as img:  # the header only
            if img.format != "JPEG" or img.mode not in ("RGB", "L") or img.getexif().get(_ORIENTATION, 1) != 1:
                return None
    except _UNREADABLE:  # the Pillow way reports it
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    return image if image is not None and image.ndim == 3 else None


@contextmanager
def _decoded(path: PathLike) -> Iterator[Image.Image]:
    """The image at ``path``, decoded in full (so that a truncated file fails here); every way of failing,
    inside the block too, is an :class:`ImageReadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            yield img
    except _UNREADABLE as err:
        raise ImageReadError(f"cannot read image {path}: {type(err).__name__}: {err}") from err


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` found: the upright size in pixels, the stored PIL mode, the EXIF rotation."""

    width: int  # after EXIF orientation, as read_image returns it
    height: int
    mode: str  # as stored: "RGB", "L", "RGBA", "CMYK", "P", "I;16", ...
    rotated: bool  # an EXIF orientation tag turns or mirrors the stored pixels


def inspect_image(path: PathLike) -> ImageInfo:
    """Decode the image at ``path`` in full (so a truncated file fails) and describe it, as :func:`read_image`
    would read it.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    with _decoded(path) as img:
        orientation = img.getexif().get(_ORIENTATION, 1)
        (width, height), mode = img.size, img.mode
    if orientation in (5, 6, 7, 8):  # transposed: a quarter turn, possibly mirrored
        width, height = height, width
    return ImageInfo(width, height, mode, orientation in range(2, 9))


_ORIENTATION = 0x0112  # the EXIF tag


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


def tensor_to_pixels(image: Tensor) -> Tensor:
    """Float [C, H, W] in [0, 1] (clamped) -> uint8 [C, H, W] on the CPU, rounded: what drawing and PNGs take."""
    return (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colormap as a flat ``[r0, g0, b0, r1, ...]`` list of ``n`` colors (``PIL.Image.putpalette``).

    The devkit's ``VOClabelcolormap.m``: the bits of the class index are dealt out in turn to red, green and
    blue, from the most significant bit of each channel down.

    Example:
        >>> voc_palette(4)  # background black, aeroplane dark red, bicycle dark green, bird olive
        [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
        >>> voc_palette()[255 * 3 : 256 * 3]  # the ignore index 255
        [224, 224, 192]
    """
    palette: list[int] = []
    for index in range(n):
        rgb = [0, 0, 0]
        c = index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << bit
            c >>= 3
        palette += rgb
    return palette


def write_index_png(labels: Tensor, path: Path) -> None:
    """``labels`` [H, W] (0..255) as a palette PNG in the VOC colors, written through a rename."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise ValueError(
            f"predicted labels span {int(labels.min())}..{int(labels.max())} for {path}; a palette PNG holds "
            "0..255, so at most 256 classes can be written"
        )
    picture = Image.fromarray(labels.detach().to("cpu", torch.uint8).numpy().astype(np.uint8))  # mode L
    picture.putpalette(voc_palette())  # L with a palette becomes P
    save_png(picture, path)


def save_png(picture: Image.Image, path: Path) -> None:
    """Save through a temporary file and a rename, so a crash never leaves half a picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda name: picture.save(name, format="PNG"))
