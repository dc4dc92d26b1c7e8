"""The synthetic shapes detection dataset, written in the official COCO or VOC layout.

Image ``index`` of a dataset written with ``seed`` is ``make_sample(sample_rng(seed, index), image_size)``
(:mod:`mobiletasks.data.synthetic.shapes`), so the COCO and the VOC copies of one seed hold the same images
and boxes. It is the default dataset of the detection task, small enough to generate in seconds and to overfit
on a CPU.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np

from mobiletasks.data.synthetic.shapes import SHAPE_CLASSES, ShapeObject
from mobiletasks.data.synthetic.writers import (
    COCOWriter,
    WriterFactory,
    image_name,
    read_info,
    save_jpeg,
    write_dataset,
)

__all__ = [
    "DetectionFormat",
    "dataset_exists",
    "write_detection_dataset",
]

DetectionFormat = Literal["coco", "voc"]


class _VOCWriter:
    """``VOC2012/{JPEGImages,Annotations,ImageSets/Main}``; boxes 1-based inclusive, as the devkit reads them."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root / "VOC2012"
        self.ids: dict[str, list[str]] = {s: [] for s in splits}
        self.present: dict[str, list[set[int]]] = {s: [] for s in splits}  # labels in each image
        for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (self.root / folder).mkdir(parents=True)

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        image_id = image_name(index)
        save_jpeg(image, self.root / "JPEGImages" / f"{image_id}.jpg")
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


_WRITERS: dict[str, WriterFactory] = {"coco": COCOWriter, "voc": _VOCWriter}


def dataset_exists(out: str | Path, format: str) -> bool:
    """Whether ``out`` holds a complete synthetic detection dataset in ``format`` ("coco" or "voc")."""
    info = read_info(out)
    return info is not None and info.get("task") == "detection" and info.get("format") == format


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
        >>> import tempfile
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
