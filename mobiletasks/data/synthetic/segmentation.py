"""The synthetic shapes dataset with semantic masks, written as VOC2012 segmentation or COCO.

The images and shapes are those of the detection dataset (:func:`~mobiletasks.data.synthetic.shapes.make_sample`,
same seed, same images): the class mask of image ``index`` puts ``label + 1`` on each shape's exact visible mask
and 0 (background) elsewhere, so class ``k`` of ``("background", *SHAPE_CLASSES)`` is pixel value ``k``.
There is no 255 boundary band: the masks are exact.

Layouts:

- ``voc``: ``VOC2012/JPEGImages/*.jpg``, ``VOC2012/SegmentationClass/*.png`` (palette PNGs, VOC palette),
  ``VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt``.
- ``coco``: ``images/{train,val}/*.jpg``, ``annotations/instances_{train,val}.json`` (one annotation per
  shape, RLE ``segmentation`` from ``pycocotools.mask``, category ids 1..5) and
  ``semantic/{train,val}/*.png`` (single-channel index masks, pixel = category id, 0 = background) with
  ``semantic/classes.json`` (pixel value -> class name), as in coco128.

Writing is atomic as for detection (a temporary folder renamed into place; the marker file last, with
``"task": "segmentation"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

from mobiletasks.data.io import write_index_png
from mobiletasks.data.synthetic.shapes import SHAPE_CLASSES, ShapeObject
from mobiletasks.data.synthetic.writers import COCOWriter, WriterFactory, image_name, save_jpeg, write_dataset

__all__ = [
    "SEGMENTATION_CLASSES",
    "SegmentationFormat",
    "class_mask",
    "write_segmentation_dataset",
]

SegmentationFormat = Literal["voc", "coco"]
SEGMENTATION_CLASSES: tuple[str, ...] = ("background", *SHAPE_CLASSES)


def class_mask(objects: list[ShapeObject], size: int) -> np.ndarray:
    """The uint8 [size, size] class mask of a sample: ``label + 1`` on each shape's visible pixels, 0 elsewhere.

    Example:
        >>> from mobiletasks.data.synthetic import make_sample, sample_rng
        >>> _, objects = make_sample(sample_rng(0, 0), 64)
        >>> sorted(set(np.unique(class_mask(objects, 64)))) == sorted({0} | {o.label + 1 for o in objects})
        True
    """
    mask = np.zeros((size, size), np.uint8)
    for obj in objects:  # visible masks do not overlap; bottom first all the same
        mask[obj.mask] = obj.label + 1
    return mask


class _VOCSegmentationWriter:
    """``VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root / "VOC2012"
        self.ids: dict[str, list[str]] = {s: [] for s in splits}
        for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (self.root / folder).mkdir(parents=True)

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        image_id = image_name(index)
        save_jpeg(image, self.root / "JPEGImages" / f"{image_id}.jpg")
        mask = torch.from_numpy(class_mask(objects, image.shape[0]))
        write_index_png(mask, self.root / "SegmentationClass" / f"{image_id}.png")
        self.ids[split].append(image_id)

    def close(self) -> None:
        lists = {**self.ids, "trainval": [i for ids in self.ids.values() for i in ids]}
        for split, ids in lists.items():
            (self.root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


class _COCOSegmentationWriter(COCOWriter):
    """COCO instances with RLE masks, plus a ``semantic/`` folder of index masks; image id = index + 1."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        super().__init__(root, splits, description)
        for s in splits:
            (root / "semantic" / s).mkdir(parents=True)

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        super().add(split, index, image, objects)
        mask = class_mask(objects, image.shape[0])
        Image.fromarray(mask).save(self.root / "semantic" / split / f"{image_name(index)}.png")

    def segmentation(self, obj: ShapeObject) -> Any:
        rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}

    def close(self) -> None:
        super().close()
        classes = {str(k): name for k, name in enumerate(SEGMENTATION_CLASSES)}
        (self.root / "semantic" / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")


_WRITERS: dict[str, WriterFactory] = {"voc": _VOCSegmentationWriter, "coco": _COCOSegmentationWriter}


def write_segmentation_dataset(
    out: str | Path,
    *,
    format: SegmentationFormat = "voc",
    num_images: int = 200,
    val_fraction: float = 0.2,
    num_val: int | None = None,
    image_size: int = 320,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic shapes segmentation dataset to ``out`` (layouts in the module doc).

    Arguments, atomic writing and refusals as
    :func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`: image ``i`` is
    ``make_sample(sample_rng(seed, i), image_size)``, its mask :func:`class_mask` of its shapes.

    Returns:
        the dataset folder, as an absolute path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = write_segmentation_dataset(Path(tmp) / "s", num_images=5, image_size=64, progress=False)
        ...     print(sorted(p.name for p in (root / "VOC2012").iterdir()))
        ['ImageSets', 'JPEGImages', 'SegmentationClass']
    """
    return write_dataset(
        out,
        task="segmentation",
        writers=_WRITERS,
        classes=SEGMENTATION_CLASSES,
        format=format,
        num_images=num_images,
        val_fraction=val_fraction,
        num_val=num_val,
        image_size=image_size,
        seed=seed,
        progress=progress,
    )
