"""A seeded "shapes" dataset: colored geometric shapes on textured backgrounds, written as COCO or VOC.

It is the default dataset of the detection task, small enough to generate in seconds and to overfit on a CPU.
The class of a shape is its outline (circle, square, ...), never its color: colors are drawn independently.

One sample is made in three steps, so other writers (semantic masks, later) reuse the first two:

1. ``_background``: noise, gradients, stripes or soft blobs, sometimes two of them blended;
2. ``make_sample``: 1 to 6 shapes drawn on top, each kept only where at least half of it stays visible;
   every shape keeps its exact visible mask and the box of that mask;
3. a writer (``_COCOWriter``, ``_VOCWriter``) puts images and annotations in the official layout.

Image ``index`` of a dataset written with ``seed`` is ``make_sample(sample_rng(seed, index), image_size)``, so
the COCO and the VOC copies of one seed hold the same images and boxes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

__all__ = [
    "SHAPE_CLASSES",
    "ShapeObject",
    "dataset_exists",
    "make_sample",
    "read_info",
    "sample_rng",
    "write_detection_dataset",
]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

MARKER = "mobiletasks_synth.json"  # written last: its presence means the dataset is complete
DetectionFormat = Literal["coco", "voc"]
FORMATS: tuple[str, ...] = ("coco", "voc")

MIN_SIZE, MAX_SIZE = 0.06, 0.6  # shape extent as a fraction of the image side, drawn log-uniformly
MAX_OBJECTS = 6
MIN_VISIBLE = 0.5  # a shape may be covered by later ones, but at most by half
MIN_CONTRAST = 90.0  # RGB distance between a shape's color and the pixels it covers
JPEG_QUALITY = 90


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


def _shape_mask(
    rng: np.random.Generator, label: int, size: int, extent_range: tuple[float, float] = (MIN_SIZE, MAX_SIZE)
) -> np.ndarray:
    """The full (unoccluded) mask of one randomly sized, rotated and placed shape; its extent is drawn
    log-uniformly in ``extent_range`` (fractions of the image side)."""
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


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
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


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3] in about 0..255: one texture, sometimes blended with a second one."""
    image = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, size)
    if rng.random() < 0.5:
        alpha = rng.uniform(0.2, 0.5)
        image = (1 - alpha) * image + alpha * _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, size)
    return image


# ---------------------------------------------------------------------------------------------- samples


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, avoid: list[np.ndarray]) -> np.ndarray:
    """Fill ``mask`` with a lightly shaded color far from what it covers and from ``avoid``; return the color."""
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
    image = _background(rng, size)
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    labels: list[int] = []
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    for _ in range(wanted):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        for _attempt in range(20):
            mask = _shape_mask(rng, label, size)
            covered = [v & ~mask for v in visible]
            if all(c.sum() >= MIN_VISIBLE * f.sum() for c, f in zip(covered, full, strict=True)):
                break
        else:
            continue  # no room for this shape
        # the colors of the shapes this one overlaps: the boundary between two shapes must stay visible
        overlapped = [c for c, f in zip(colors, full, strict=True) if (f & mask).any()]
        colors.append(_paint(rng, image, mask, overlapped))
        labels.append(label)
        full.append(mask)
        visible = [*covered, mask]
    objects = [ShapeObject(label, _mask_box(v), v) for label, v in zip(labels, visible, strict=True)]
    return _finish(rng, image), objects


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Add sensor noise to a float image and round it to uint8."""
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0, 8))
    return np.clip(image, 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- writers


class _Writer(Protocol):
    """Writes one dataset: ``add`` each sample, then ``close``."""

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None: ...

    def close(self) -> None: ...


def _image_name(index: int) -> str:
    return f"{index + 1:06d}"


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


class _COCOWriter:
    """``images/{split}/*.jpg`` and ``annotations/instances_{split}.json``; image id = index + 1."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root
        info = {"description": description, "version": "1.0"}
        categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)]
        self.data: dict[str, dict[str, Any]] = {
            s: {"info": info, "licenses": [], "images": [], "annotations": [], "categories": categories} for s in splits
        }
        for s in splits:
            (root / "images" / s).mkdir(parents=True)
        (root / "annotations").mkdir()

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        data = self.data[split]
        file_name = _image_name(index) + ".jpg"
        _save_jpeg(image, self.root / "images" / split / file_name)
        height, width = image.shape[:2]
        data["images"].append({"id": index + 1, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": obj.label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(obj.area),
                    "iscrowd": 0,
                    "segmentation": self.segmentation(obj),
                }
            )

    def segmentation(self, obj: ShapeObject) -> Any:
        """The box's rectangle, as in coco128; the exact masks come from make_sample."""
        x0, y0, x1, y1 = obj.box
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]

    def close(self) -> None:
        for split, data in self.data.items():
            (self.root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


class _VOCWriter:
    """``VOC2012/{JPEGImages,Annotations,ImageSets/Main}``; boxes 1-based inclusive, as the devkit reads them."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root / "VOC2012"
        self.ids: dict[str, list[str]] = {s: [] for s in splits}
        self.present: dict[str, list[set[int]]] = {s: [] for s in splits}  # labels in each image
        for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (self.root / folder).mkdir(parents=True)

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        image_id = _image_name(index)
        _save_jpeg(image, self.root / "JPEGImages" / f"{image_id}.jpg")
        height, width = image.shape[:2]
        root = ET.Element("annotation")
        _sub(root, "folder", "VOC2012")
        _sub(root, "filename", f"{image_id}.jpg")
        size = _sub(root, "size")
        for key, value in (("width", width), ("height", height), ("depth", 3)):
            _sub(size, key, str(value))
        _sub(root, "segmented", "0")
        for obj in objects:
            node = _sub(root, "object")
            _sub(node, "name", obj.name)
            _sub(node, "pose", "Unspecified")
            _sub(node, "truncated", "0")
            _sub(node, "difficult", "0")
            box = _sub(node, "bndbox")
            x0, y0, x1, y1 = (round(v) for v in obj.box)
            for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
                _sub(box, key, str(value))
        ET.indent(root, space="  ")
        ET.ElementTree(root).write(self.root / "Annotations" / f"{image_id}.xml", encoding="unicode")
        self.ids[split].append(image_id)
        self.present[split].append({obj.label for obj in objects})

    def close(self) -> None:
        main = self.root / "ImageSets" / "Main"
        lists = {**self.ids, "trainval": [i for ids in self.ids.values() for i in ids]}
        present = {**self.present, "trainval": [p for ps in self.present.values() for p in ps]}
        for split, ids in lists.items():
            (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
            # the devkit's per-class lists: 1 when the image holds the class, -1 when not
            for label, name in enumerate(SHAPE_CLASSES):
                rows = "".join(f"{i} {1 if label in p else -1:2d}\n" for i, p in zip(ids, present[split], strict=True))
                (main / f"{name}_{split}.txt").write_text(rows)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = text
    return node


# format -> writer class, called as cls(root, splits, description)
_WRITERS: dict[str, Callable[[Path, tuple[str, ...], str], _Writer]] = {"coco": _COCOWriter, "voc": _VOCWriter}


# ---------------------------------------------------------------------------------------------- datasets


def read_info(out: str | Path) -> dict[str, Any] | None:
    """What ``write_detection_dataset`` recorded in ``out`` (format, seed, counts, ...), or None if it did not."""
    try:
        info: dict[str, Any] = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def ensure_dataset(
    out: str | Path, write: Callable[..., Path], *, task: str, format: str, num_images: int, image_size: int, seed: int
) -> None:
    """Write the synthetic ``task`` dataset into ``out`` with ``write`` (``write_detection_dataset``, ...) unless
    the one there was made with these settings: what the Shapes data modules do on first use."""
    info = read_info(out) or {}
    wanted = {"task": task, "format": format, "seed": seed, "image_size": image_size}
    if any(info.get(k) != v for k, v in wanted.items()) or sum(info.get("images", {}).values()) != num_images:
        write(out, format=format, num_images=num_images, image_size=image_size, seed=seed)


def dataset_exists(out: str | Path, format: str) -> bool:
    """Whether ``out`` holds a complete synthetic detection dataset in ``format`` ("coco" or "voc")."""
    info = read_info(out)
    return info is not None and info.get("task") == "detection" and info.get("format") == format


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"the dataset folder {out} is a file; choose a new folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and read_info(out) is None:
        raise ValueError(
            f"the dataset folder {out} is not empty and holds no synthetic dataset (no {MARKER}); refusing to "
            "overwrite it. Choose a new or empty folder, or delete this one first."
        )


def write_detection_dataset(
    out: str | Path,
    *,
    format: DetectionFormat = "coco",
    num_images: int = 200,
    val_fraction: float = 0.2,
    num_val: int | None = None,
    image_size: int = 320,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic shapes detection dataset to ``out``, in the official COCO or VOC layout.

    The dataset is written to a temporary folder next to ``out`` and renamed into place at the end, so ``out``
    never holds half a dataset. ``out`` may be missing, empty or a dataset written here before (it is
    replaced); anything else is refused. The same arguments give byte-identical annotation files.

    Args:
        out: the dataset folder. COCO: ``images/{train,val}/*.jpg``, ``annotations/instances_{train,val}.json``
            (category ids 1..5 in ``SHAPE_CLASSES`` order). VOC: ``VOC2012/JPEGImages/*.jpg``,
            ``VOC2012/Annotations/*.xml``, ``VOC2012/ImageSets/Main/{train,val,trainval}.txt``.
        format: "coco" or "voc".
        num_images: images in both splits together.
        val_fraction: the share of images in the val split (the last ones), unless ``num_val`` is given.
        num_val: the number of val images.
        image_size: the side of the square images, in pixels.
        seed: the dataset's seed; image ``i`` is ``make_sample(sample_rng(seed, i), image_size)``.
        progress: show a progress bar.

    Returns:
        the dataset folder, as an absolute path.

    Example:
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = write_detection_dataset(Path(tmp) / "shapes", num_images=5, image_size=64, progress=False)
        ...     print(dataset_exists(root, "coco"), read_info(root)["images"])
        True {'train': 4, 'val': 1}
    """
    return write_dataset(
        out,
        task="detection",
        writers=_WRITERS,
        classes=SHAPE_CLASSES,
        format=format,
        num_images=num_images,
        val_fraction=val_fraction,
        num_val=num_val,
        image_size=image_size,
        seed=seed,
        progress=progress,
    )


def write_dataset(
    out: str | Path,
    *,
    task: str,
    writers: Mapping[str, Callable[[Path, tuple[str, ...], str], _Writer]],
    classes: Sequence[str],
    format: str,
    num_images: int,
    val_fraction: float,
    num_val: int | None,
    image_size: int,
    seed: int,
    progress: bool,
    sampler: Callable[[int, int, int], tuple[np.ndarray, list[ShapeObject]]] | None = None,
) -> Path:
    """The shared body of the dataset writers: checks, samples through a ``writers[format]``, the marker, and
    an atomic replace (everything goes to a hidden folder next to ``out``, renamed into place at the end).
    Image ``index`` is ``sampler(seed, index, image_size)``; by default
    ``make_sample(sample_rng(seed, index), image_size)``."""
    out = Path(out)
    if format not in writers:
        raise ValueError(f"format={format!r} is not one of {tuple(writers)}; use one of them")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 2:
        raise ValueError(f"num_images={num_images!r}: need an integer >= 2 (at least one train and one val image)")
    if num_val is None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1, e.g. 0.2")
        num_val = min(max(round(num_images * val_fraction), 1), num_images - 1)
    if not 0 <= num_val < num_images:
        raise ValueError(f"num_val={num_val!r} must lie in 0..{num_images - 1} (num_images={num_images})")
    if image_size < 32:
        raise ValueError(f"image_size={image_size!r} is too small for shapes; use 32 pixels or more (default 320)")
    if seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    _check_target(out)

    num_train = num_images - num_val
    splits = ("train", "val")
    target = out.resolve()  # a real name and parent, even for "." or a link
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        suffix = "" if task == "detection" else f" ({task})"
        writer = writers[format](tmp, splits, f"mobiletasks synthetic shapes{suffix}, seed {seed}")
        counts = dict.fromkeys(splits, 0)
        for index in tqdm(range(num_images), desc=f"shapes ({format})", unit="img", disable=not progress):
            split = "train" if index < num_train else "val"
            if sampler is None:
                image, objects = make_sample(sample_rng(seed, index), image_size)
            else:
                image, objects = sampler(seed, index, image_size)
            writer.add(split, index, image, objects)
            counts[split] += len(objects)
        writer.close()
        info = {
            "generator": __name__,
            "task": task,
            "format": format,
            "seed": seed,
            "image_size": image_size,
            "classes": list(classes),
            "images": {"train": num_train, "val": num_val},
            "objects": counts,
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        _replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _replace(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out``, replacing an earlier dataset (checked) or an empty folder."""
    _check_target(out)  # again: another process may have written there meanwhile
    old = None
    if out.exists():
        old = new.with_name(new.name + ".old")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
