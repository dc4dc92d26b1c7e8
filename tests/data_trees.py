"""The coco128 and voc128 trees the tests read, and small stand-ins for them written from the synthetic shapes.

The real trees hold the same photographs twice: in the COCO 2017 layout (``coco128``) and converted to the
Pascal VOC 2012 layout (``voc128``). Tests reach them through a :class:`DataTrees` record, which also carries
what they know of the files (counts, the images without annotations). Where the real files are absent,
:func:`write_data_trees` writes a pair with the same layouts and the same kinds of content, 40 images of
160 x 128 or 128 x 160 pixels (a 128-pixel square of shapes and a plain band):

- ``coco128/``: ``images/{train2017,val2017}/<12-digit id>.jpg`` (16 and 24; image id = index + 1),
  ``annotations/instances_{train2017,val2017}.json`` listing all 80 COCO categories (ids 1..90) with the boxes'
  rectangles as ``segmentation``, one ``iscrowd`` region a split and two train images without annotations;
  ``semantic/{train2017,val2017}/*.png`` (pixel = COCO category id; the background is 0, unlabeled, or a
  "stuff" class) for all but every 8th image, and ``semantic/classes.json``.
- ``voc128/VOC2012/``: the same images as ``JPEGImages/``, ``Annotations/*.xml`` (1-based inclusive boxes,
  ``difficult`` for a shorter side under 12 pixels), ``SegmentationClass/*.png`` (VOC palette) for the images
  with a semantic mask, ``ImageSets/{Main,Segmentation}/{train,val}.txt`` (train: the COCO train images).

Images, boxes and masks are those of ``write_detection_dataset`` and ``write_segmentation_dataset`` (same seed,
so the same images); each shape class stands for one class that COCO and VOC share (``SHAPE_AS``).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

from mobiletasks.data import VOC_CLASSES
from mobiletasks.data.io import write_index_png
from mobiletasks.data.synthetic import SHAPE_CLASSES, write_detection_dataset, write_segmentation_dataset


@dataclass(frozen=True)
class DataTrees:
    """A coco128 tree and a voc128 tree of the same images, and what tests know of their files."""

    coco128: Path  # images/, annotations/ and semantic/, each with train2017 and val2017
    voc128: Path  # the VOCdevkit folder: VOC2012/ inside
    real: bool
    train_images: int  # images in coco128's train2017
    empty_images: frozenset[int]  # train2017 image ids without any annotation
    train_crowds: int  # iscrowd annotations in train2017
    val_images: int  # images in coco128's val2017
    val_masks: int  # val2017 images with a semantic mask; voc128's val segmentation list names as many


_current: list[DataTrees] = []


def use(trees: DataTrees) -> DataTrees:
    """Make ``trees`` the ones :func:`current` gives (conftest's ``trees`` fixture calls this)."""
    _current[:] = [trees]
    return trees


def current() -> DataTrees:
    """The trees of this test session, for helpers that copy from them (their tests use the ``trees`` fixture)."""
    if not _current:
        raise RuntimeError("no data trees yet: a test that copies from them must use the `trees` fixture")
    return _current[0]


SEED = 0
IMAGE_SIZE = 128
# val holds more than one 16-image evaluation batch, and 15 and 13 images (odd sizes for two processes)
TRAIN_IMAGES, VAL_IMAGES = 16, 24
SPLITS = {"train": "train2017", "val": "val2017"}
# shape class -> (COCO category id, VOC class), classes the two datasets share; no cow, as in voc128
SHAPE_AS = {
    "circle": (1, "person"),
    "square": (72, "tvmonitor"),
    "triangle": (18, "dog"),
    "star": (16, "bird"),
    "cross": (5, "aeroplane"),
}
EMPTY_IMAGES = frozenset({6, 11})  # train images whose annotations are left out: negatives, as in coco128
NO_MASK = 8  # every 8th image has no semantic mask (coco128 has masks for 100 of the 128 images of a split)
STUFF_ID, STUFF_NAME = 199, "wall-other-merged"  # a COCO panoptic "stuff" class: every other mask's background
DIFFICULT_SIDE = 12  # voc128 flags objects whose shorter side is under 12 pixels as difficult
BAND = 32  # a plain band widens even-numbered images and heightens odd ones: photos are seldom square


def coco_categories() -> list[dict[str, int | str]]:
    """The 80 COCO categories with their original ids, from torchvision's COCO weights (index = category id)."""
    names = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["categories"]
    return [{"id": i, "name": name} for i, name in enumerate(names) if name not in ("__background__", "N/A")]


def write_data_trees(out: Path) -> DataTrees:
    """Write the stand-in coco128 and voc128 trees under ``out`` (layouts in the module doc)."""
    shapes = out / "shapes"
    settings = {"num_images": TRAIN_IMAGES + VAL_IMAGES, "num_val": VAL_IMAGES, "image_size": IMAGE_SIZE, "seed": SEED}
    coco = write_detection_dataset(shapes / "coco", format="coco", progress=False, **settings)
    voc = write_detection_dataset(shapes / "voc", format="voc", progress=False, **settings)
    masks = write_segmentation_dataset(shapes / "masks", format="coco", progress=False, **settings)
    _write_coco128(coco, masks / "semantic", out / "coco128")
    _write_voc128(voc / "VOC2012", masks / "semantic", out / "coco128" / "images", out / "voc128" / "VOC2012")
    shutil.rmtree(shapes)
    return DataTrees(
        out / "coco128",
        out / "voc128",
        real=False,
        train_images=TRAIN_IMAGES,
        empty_images=EMPTY_IMAGES,
        train_crowds=1,
        val_images=VAL_IMAGES,
        val_masks=VAL_IMAGES - VAL_IMAGES // NO_MASK,
    )


def _has_mask(image_id: int) -> bool:
    return image_id % NO_MASK != 0


def _pad(array: np.ndarray, image_id: int, fill: Any) -> np.ndarray:
    """``array`` (an image or a mask) with the band of ``image_id`` filled with ``fill``, right or at the bottom."""
    height, width = array.shape[:2]
    bottom, right = (0, BAND) if image_id % 2 == 0 else (BAND, 0)
    out = np.empty((height + bottom, width + right, *array.shape[2:]), array.dtype)
    out[...] = fill
    out[:height, :width] = array
    return out


def _shape_masks(semantic: Path, split: str, image_id: int) -> np.ndarray:
    """The class mask of an image, banded: 0 background, ``k`` on shape class ``SHAPE_CLASSES[k - 1]``."""
    with Image.open(semantic / split / f"{image_id:06d}.png") as mask:
        return _pad(np.asarray(mask), image_id, 0)


def _write_coco128(coco: Path, semantic: Path, root: Path) -> None:
    category_of = {k + 1: SHAPE_AS[name][0] for k, name in enumerate(SHAPE_CLASSES)}
    to_coco = np.zeros(len(SHAPE_CLASSES) + 1, np.uint8)
    to_coco[1:] = [SHAPE_AS[name][0] for name in SHAPE_CLASSES]
    categories = coco_categories()
    for split, year in SPLITS.items():
        data = json.loads((coco / "annotations" / f"instances_{split}.json").read_text())
        (root / "images" / year).mkdir(parents=True)
        (root / "semantic" / year).mkdir(parents=True)
        for image in data["images"]:
            name = f"{image['id']:012d}"
            with Image.open(coco / "images" / split / image["file_name"]) as picture:
                pixels = np.asarray(picture.convert("RGB"))
            pixels = _pad(pixels, image["id"], pixels.mean((0, 1)).astype(np.uint8))
            Image.fromarray(pixels).save(root / "images" / year / f"{name}.jpg", quality=90)
            image["file_name"], image["height"], image["width"] = f"{name}.jpg", *pixels.shape[:2]
            if _has_mask(image["id"]):
                mask = to_coco[_shape_masks(semantic, split, image["id"])]
                mask[mask == 0] = STUFF_ID if image["id"] % 2 else 0
                Image.fromarray(mask).save(root / "semantic" / year / f"{name}.png")
        annotations = [a for a in data["annotations"] if a["image_id"] not in EMPTY_IMAGES]
        for ann in annotations:
            ann["category_id"] = category_of[ann["category_id"]]
        _crowd(annotations)["iscrowd"] = 1
        (root / "annotations").mkdir(exist_ok=True)
        info = {"description": f"coco128 stand-in: mobiletasks synthetic shapes, seed {SEED}", "version": "1.0"}
        data = {"info": info, "licenses": [], "images": data["images"], "annotations": annotations}
        data["categories"] = categories  # last, as in COCO's files
        (root / "annotations" / f"instances_{year}.json").write_text(json.dumps(data))
    classes = {"0": "unlabeled"} | {str(c["id"]): c["name"] for c in categories} | {str(STUFF_ID): STUFF_NAME}
    (root / "semantic" / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")


def _crowd(annotations: list[dict]) -> dict:
    """The annotation to turn into a crowd region: the largest of an image with two boxes or more of at most
    three classes (it keeps a box and lacks some of the split's classes). Early in the split, as in coco128, so
    that detections there rank before other images' at equal scores; not the first image, which tests copy."""
    by_image: dict[int, list[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in sorted(by_image)[1:]:
        anns = by_image[image]
        if len(anns) >= 2 and len({a["category_id"] for a in anns}) <= 3:
            return max(anns, key=lambda a: a["area"])
    raise ValueError("no image fits a crowd region; change SEED")


def _write_voc128(source: Path, semantic: Path, images: Path, year: Path) -> None:
    """voc128 from the VOC writer's XML, coco128's images (``images``) and the synthetic masks."""
    to_voc = np.zeros(len(SHAPE_CLASSES) + 1, np.uint8)
    to_voc[1:] = [1 + VOC_CLASSES.index(SHAPE_AS[name][1]) for name in SHAPE_CLASSES]
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (year / sub).mkdir(parents=True)
    for split, coco_split in SPLITS.items():
        listed, segmented = [], []
        for old in (source / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
            image_id = int(old)
            name = f"{image_id:012d}"
            shutil.copy(images / coco_split / f"{name}.jpg", year / "JPEGImages" / f"{name}.jpg")
            with Image.open(year / "JPEGImages" / f"{name}.jpg") as picture:
                width, height = picture.size
            tree = ET.parse(source / "Annotations" / f"{old}.xml")
            annotation = tree.getroot()
            _set(annotation, "filename", f"{name}.jpg")
            _set(annotation, "size/width", str(width))
            _set(annotation, "size/height", str(height))
            _set(annotation, "segmented", str(int(_has_mask(image_id))))
            for obj in annotation.iter("object"):
                _set(obj, "name", SHAPE_AS[obj.findtext("name", "")][1])
                x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}", "")) for k in ("xmin", "ymin", "xmax", "ymax"))
                _set(obj, "difficult", str(int(min(x1 - x0, y1 - y0) + 1 < DIFFICULT_SIDE)))  # inclusive pixels
            tree.write(year / "Annotations" / f"{name}.xml", encoding="unicode")
            listed.append(name)
            if _has_mask(image_id):
                labels = torch.from_numpy(to_voc[_shape_masks(semantic, split, image_id)])
                write_index_png(labels, year / "SegmentationClass" / f"{name}.png")
                segmented.append(name)
        for kind, ids in (("Main", listed), ("Segmentation", segmented)):
            (year / "ImageSets" / kind / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def _set(node: ET.Element, tag: str, text: str) -> None:
    child = node.find(tag)
    if child is None:
        raise ValueError(f"<{node.tag}> has no <{tag}>: the synthetic VOC writer changed; update data_trees.py")
    child.text = text
