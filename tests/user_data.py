"""Users' own files, rebuilt from copies of the coco128 / voc128 files (the real ones, or their synthetic
stand-ins): helpers shared by the tests of the failure kinds (``test_user_data.py``) and of
``mobiletasks data check`` (``test_data_check.py``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_trees import current
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.usefixtures("trees")  # the helpers below copy from the session's trees


def coco_copy(
    folder: Path, count: int = 4, edit: Callable[[dict[str, Any]], None] | None = None, split: str = "val2017"
) -> tuple[Path, Path]:
    """The first ``count`` images of a coco128 split and their annotations, copied under ``folder``
    (``images/``, ``instances.json``); ``edit(data)`` may change the json first."""
    coco128 = current().coco128
    data = json.loads((coco128 / "annotations" / f"instances_{split}.json").read_text())
    data["images"] = sorted(data["images"], key=lambda im: im["id"])[:count]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for image in data["images"]:
        shutil.copy(coco128 / "images" / split / image["file_name"], images / image["file_name"])
    if edit is not None:
        edit(data)
    annotations = folder / "instances.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


def ground_truth_results(annotations: Path) -> list[dict[str, Any]]:
    """The ground-truth boxes of a COCO file as detections (score 1): mAP 1.0 when scored right."""
    data = json.loads(annotations.read_text())
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
        if not a.get("iscrowd")
    ]


def voc_copy(
    folder: Path, ids: list[str] | None = None, edit_mask: Callable[[np.ndarray], np.ndarray] | None = None
) -> Path:
    """A VOCdevkit under ``folder`` with voc128's 2012 val images (all, or ``ids``), their XML and masks;
    ``edit_mask(values)`` rewrites each mask (saved as a grayscale PNG then). Returns the VOCdevkit folder."""
    source = current().voc128 / "VOC2012"
    root = folder / "VOCdevkit"
    target = root / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    listed = (source / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    ids = listed if ids is None else ids
    for i in ids:
        shutil.copy(source / "JPEGImages" / f"{i}.jpg", target / "JPEGImages" / f"{i}.jpg")
        shutil.copy(source / "Annotations" / f"{i}.xml", target / "Annotations" / f"{i}.xml")
        mask = source / "SegmentationClass" / f"{i}.png"
        if edit_mask is None:
            shutil.copy(mask, target / "SegmentationClass" / f"{i}.png")
        else:
            values = edit_mask(np.array(Image.open(mask)))
            Image.fromarray(values.astype(np.uint8), mode="L").save(target / "SegmentationClass" / f"{i}.png")
    for sub in ("Main", "Segmentation"):
        (target / "ImageSets" / sub / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def person_ids(limit: int = 6) -> list[str]:
    """voc128 val images whose mask shows a person (VOC label 15)."""
    year = current().voc128 / "VOC2012"
    masks = sorted((year / "SegmentationClass").glob("*.png"))
    val = set((year / "ImageSets" / "Segmentation" / "val.txt").read_text().split())
    found = [m.stem for m in masks if m.stem in val and (np.array(Image.open(m)) == 15).any()]
    return found[:limit]


def binary_person_mask(values: np.ndarray) -> np.ndarray:
    """The most common custom format: 0 background, 255 the object (here: person)."""
    return np.where(values == 15, 255, 0)
