"""The shapes generator: colored geometric shapes on textured backgrounds, seeded image by image.

The class of a shape is its outline (circle, square, ...), never its color: colors are drawn independently.
One sample is made in three steps, which the other samplers (one shape per image, for classification) reuse:

1. :func:`random_background`: noise, gradients, stripes or soft blobs, sometimes two of them blended;
2. shapes drawn on top (:func:`shape_mask`, :func:`paint_shape`), in :func:`make_sample` 1 to 6 of them, each
   kept only where at least half of it stays visible; every shape keeps its exact visible mask and the box of
   that mask (:func:`mask_box`);
3. :func:`finish_image`: sensor noise, rounded to uint8.

Image ``index`` of a dataset written with ``seed`` is ``make_sample(sample_rng(seed, index), image_size)``, so
every layout of one seed holds the same images and shapes. The writers are in
:mod:`mobiletasks.data.synthetic.writers` and the modules of each task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "SHAPE_CLASSES",
    "ShapeObject",
    "finish_image",
    "make_sample",
    "mask_box",
    "paint_shape",
    "random_background",
    "sample_rng",
    "shape_mask",
]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

MIN_SIZE, MAX_SIZE = 0.06, 0.6  # shape extent as a fraction of the image side, drawn log-uniformly
MAX_OBJECTS = 6
MIN_VISIBLE = 0.5  # a shape may be covered by later ones, but at most by half
MIN_CONTRAST = 90.0  # RGB distance between a shape's color and the pixels it covers


@dataclass
class ShapeObject:
    """One shape of a sample.

    Attributes:
        label: index into ``SHAPE_CLASSES``.
        box: ``(x0, y0, x1, y1)`` in continuous pixel coordinates: the extent of ``mask`` (whole pixels).
        mask: bool ``[H, W]``, the pixels where this shape is visible (later shapes may cover part of it).
    """

    label: int
    box: tuple[float, float, float, float]
    mask: np.ndarray

    @property
    def name(self) -> str:
        return SHAPE_CLASSES[self.label]

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of image ``index`` of a dataset written with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


# ---------------------------------------------------------------------------------------------- shapes


def _regular(n: int, start: float) -> np.ndarray:
    angles = start + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(inner: float = 0.42) -> np.ndarray:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return _regular(10, -np.pi / 2) * radii[:, None]


def _cross(w: float = 0.32) -> np.ndarray:
    return np.array(
        [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    )


# outlines of circumradius 1, in SHAPE_CLASSES order
_OUTLINES: tuple[np.ndarray, ...] = (
    _regular(64, 0.0),  # circle
    _regular(4, np.pi / 4),  # square
    _regular(3, -np.pi / 2),  # triangle
    _star(),
    _cross(),
)
assert len(_OUTLINES) == len(SHAPE_CLASSES)


def shape_mask(
    rng: np.random.Generator, label: int, size: int, extent_range: tuple[float, float] = (MIN_SIZE, MAX_SIZE)
) -> np.ndarray:
    """The full (unoccluded) bool ``[size, size]`` mask of one randomly sized, rotated and placed shape
    ``label`` (an index into ``SHAPE_CLASSES``); its extent is drawn log-uniformly in ``extent_range``
    (fractions of the image side).

    Example:
        >>> shape_mask(sample_rng(0, 0), 1, 64).shape
        (64, 64)
    """
    extent = size * np.exp(rng.uniform(*np.log(extent_range)))
    radius = max(extent, 4.0) / 2
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = _OUTLINES[label] @ rotation.T * radius
    low, high = points.min(axis=0), points.max(axis=0)
    # PIL fills pixels whose centers (integer coordinates) lie inside: keep the outline within [0, size - 1]
    offset = rng.uniform(-low, (size - 1) - high)
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in (points + offset).tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The extent ``(x0, y0, x1, y1)`` of a non-empty bool mask, in whole pixels.

    Example:
        >>> mask = np.zeros((4, 6), bool)
        >>> mask[1:3, 2:5] = True
        >>> mask_box(mask)
        (2.0, 1.0, 5.0, 3.0)
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


# ---------------------------------------------------------------------------------------------- backgrounds


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """Coordinates projected on a random direction, scaled to [0, 1]."""
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.arange(size, dtype=np.float32)
    t = axis[None, :] * np.float32(np.cos(angle)) + axis[:, None] * np.float32(np.sin(angle))
    return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)


def _mix(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    return c0 + t[..., None] * (c1 - c0)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    return _mix(_ramp(rng, size), _color(rng), _color(rng))


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    period = rng.uniform(6, size / 4) / size  # in units of the ramp
    t = 0.5 + 0.5 * np.sin(2 * np.pi * _ramp(rng, size) / period + rng.uniform(0, 2 * np.pi))
    c0 = _color(rng)
    c1 = np.clip(c0 + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)  # stripes of moderate contrast
    return _mix(t, c0, c1)


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth value noise: a small random grid, upsampled."""
    cells = int(rng.integers(2, 12))
    grid = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
    smooth = np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    c = _color(rng)
    return c + (smooth - smooth.mean(axis=(0, 1))) * rng.uniform(0.3, 0.8)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blurred ellipses: soft-edged, so that none looks like a shape to detect."""
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in _color(rng)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 12))):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(0.05, 0.3, 2) * size
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(int(v) for v in _color(rng)))
    blurred = canvas.filter(ImageFilter.GaussianBlur(radius=size * rng.uniform(0.03, 0.08)))
    return np.asarray(blurred, dtype=np.float32)


_BACKGROUNDS = (_gradient, _stripes, _noise, _blobs)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3] in about 0..255: one texture, sometimes blended with a second one."""
    image = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, size)
    if rng.random() < 0.5:
        alpha = rng.uniform(0.2, 0.5)
        image = (1 - alpha) * image + alpha * _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, size)
    return image


# ---------------------------------------------------------------------------------------------- samples


def paint_shape(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, avoid: list[np.ndarray]) -> np.ndarray:
    """Fill ``mask`` of the float ``image`` in place with a lightly shaded color far from what it covers and
    from the colors ``avoid``; return the color."""
    avoid = [image[mask].mean(axis=0), *avoid]
    best, best_distance = np.zeros(3, np.float32), -1.0
    for _ in range(10):
        color = _color(rng)
        distance = min(float(np.linalg.norm(color - a)) for a in avoid)
        if distance > best_distance:
            best, best_distance = color, distance
        if distance >= MIN_CONTRAST:
            break
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    shade = _ramp(rng, max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) - 0.5
    shade = shade[: rows[-1] - rows[0] + 1, : cols[-1] - cols[0] + 1] * rng.uniform(0, 50)
    fill = best + shade[..., None]
    image[window][mask[window]] = fill[mask[window]]
    return best


def finish_image(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Add sensor noise to a float image (in place) and round it to uint8."""
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0, 8))
    return np.clip(image, 0, 255).round().astype(np.uint8)


def make_sample(rng: np.random.Generator, size: int = 320) -> tuple[np.ndarray, list[ShapeObject]]:
    """One image of 1 to 6 shapes on a textured background.

    Args:
        rng: the source of randomness (``sample_rng(seed, index)`` for image ``index`` of a dataset).
        size: image side in pixels.

    Returns:
        ``(image, objects)``: RGB uint8 ``[size, size, 3]`` and the shapes, bottom first. Each shape's mask holds
        the pixels where it is visible, its box is the extent of that mask; later shapes cover at most half of an
        earlier one.

    Example:
        >>> image, objects = make_sample(sample_rng(0, 0), 64)
        >>> image.shape, image.dtype, 1 <= len(objects) <= 6
        ((64, 64, 3), dtype('uint8'), True)
    """
    image = random_background(rng, size)
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    labels: list[int] = []
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    for _ in range(wanted):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        for _attempt in range(20):
            mask = shape_mask(rng, label, size)
            covered = [v & ~mask for v in visible]
            if all(c.sum() >= MIN_VISIBLE * f.sum() for c, f in zip(covered, full, strict=True)):
                break
        else:
            continue  # no room for this shape
        # the colors of the shapes this one overlaps: the boundary between two shapes must stay visible
        overlapped = [c for c, f in zip(colors, full, strict=True) if (f & mask).any()]
        colors.append(paint_shape(rng, image, mask, overlapped))
        labels.append(label)
        full.append(mask)
        visible = [*covered, mask]
    objects = [ShapeObject(label, mask_box(v), v) for label, v in zip(labels, visible, strict=True)]
    return finish_image(rng, image), objects
