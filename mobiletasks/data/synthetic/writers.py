"""Writing a synthetic dataset, for every task and layout: the checks, the atomic replace, the marker file, and
the parts that several layouts share (file names, JPEG files, the COCO instances layout).

A layout is a :class:`Writer` class: ``cls(root, splits, description)``, then ``add`` each sample, then ``close``.
:func:`write_dataset` drives one through the samples of a seed; the task modules
(:mod:`~mobiletasks.data.synthetic.detection`, ``segmentation``, ``classification``) name their layouts and
classes and call it. The dataset is complete when the marker file (``MARKER``, written last) is there; it
records the settings, so :func:`ensure_dataset` writes a dataset only when the one in a folder differs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
from PIL import Image
from tqdm import tqdm

from mobiletasks.data.synthetic.shapes import SHAPE_CLASSES, ShapeObject, make_sample, sample_rng

__all__ = [
    "MARKER",
    "COCOWriter",
    "Writer",
    "WriterFactory",
    "dataset_matches",
    "ensure_dataset",
    "image_name",
    "read_info",
    "save_jpeg",
    "write_dataset",
]

MARKER = "mobiletasks_synth.json"  # written last: its presence means the dataset is complete
JPEG_QUALITY = 90


class Writer(Protocol):
    """Writes one dataset: ``add`` each sample, then ``close``."""

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None: ...

    def close(self) -> None: ...


# a layout's writer class, called as cls(root, splits, description)
WriterFactory: TypeAlias = Callable[[Path, tuple[str, ...], str], Writer]


def image_name(index: int) -> str:
    """The file stem of image ``index``: ``000001`` for index 0, as in VOC and CelebA."""
    return f"{index + 1:06d}"


def save_jpeg(image: np.ndarray, path: Path) -> None:
    """Save an RGB uint8 image as the datasets' JPEG files are saved (quality 90)."""
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


class COCOWriter:
    """``images/{split}/*.jpg`` and ``annotations/instances_{split}.json``; image id = index + 1, category ids
    1..5 in ``SHAPE_CLASSES`` order. ``segmentation`` gives an annotation's ``segmentation`` field."""

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
        file_name = image_name(index) + ".jpg"
        save_jpeg(image, self.root / "images" / split / file_name)
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


# ---------------------------------------------------------------------------------------------- datasets


def read_info(out: str | Path) -> dict[str, Any] | None:
    """What the writer recorded in ``out`` (task, format, seed, counts, ...), or None if no dataset was written
    there (or it was not finished)."""
    try:
        info: dict[str, Any] = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def dataset_matches(out: str | Path, *, task: str, format: str, num_images: int, image_size: int, seed: int) -> bool:
    """Whether ``out`` holds a complete synthetic ``task`` dataset written with these settings."""
    info = read_info(out) or {}
    wanted = {"task": task, "format": format, "seed": seed, "image_size": image_size}
    return all(info.get(k) == v for k, v in wanted.items()) and sum(info.get("images", {}).values()) == num_images


def ensure_dataset(
    out: str | Path, write: Callable[..., Path], *, task: str, format: str, num_images: int, image_size: int, seed: int
) -> None:
    """Write the synthetic ``task`` dataset into ``out`` with ``write`` (``write_detection_dataset``, ...) unless
    the one there was made with these settings: what the Shapes data modules do on first use."""
    if not dataset_matches(out, task=task, format=format, num_images=num_images, image_size=image_size, seed=seed):
        write(out, format=format, num_images=num_images, image_size=image_size, seed=seed)


def write_dataset(
    out: str | Path,
    *,
    task: str,
    writers: Mapping[str, WriterFactory],
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
    ``make_sample(sample_rng(seed, index), image_size)``. The arguments are those of
    :func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`."""
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


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"the dataset folder {out} is a file; choose a new folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and read_info(out) is None:
        raise ValueError(
            f"the dataset folder {out} is not empty and holds no synthetic dataset (no {MARKER}); refusing to "
            "overwrite it. Choose a new or empty folder, or delete this one first."
        )


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
