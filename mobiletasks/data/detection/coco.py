"""COCO detection: the official layout (an image folder and an ``instances_*.json``), read with pycocotools.

Labels are contiguous, 0..num_classes-1, in the order of the sorted category ids of the json;
``category_ids[label]`` gives the original COCO id back (for results files and ``COCOEvaluator``).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mobiletasks.data.base import check_split
from mobiletasks.data.detection.base import (
    DetectionDataModule,
    DetectionDataset,
    PathLike,
    Record,
    Transform,
    clean_boxes,
)
from mobiletasks.data.files import find_files
from mobiletasks.evaluation.coco import load_coco
from mobiletasks.evaluation.coco_json import ImageId, describe, id_order, is_int, is_number, read_json

if TYPE_CHECKING:
    from mobiletasks.evaluation.coco import COCOEvaluator


def read_categories(annotations: PathLike) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO json, sorted by id; the official files are read from their end only."""
    annotations = Path(annotations)
    if not annotations.is_file():
        raise FileNotFoundError(f"COCO annotation file {annotations} does not exist (needed for the class names)")
    categories = _tail_categories(annotations)
    if categories is None:
        data = read_json(annotations, "annotations")
        categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"COCO annotation file {annotations} lists no categories; it needs a 'categories' list")
    for k, category in enumerate(categories):
        named = isinstance(category, dict) and isinstance(category.get("name"), str)
        if not named or not is_int(category.get("id")):
            raise ValueError(
                f"COCO annotation file {annotations}: category {k} is {category!r}; each category needs an integer "
                "'id' and a 'name'"
            )
    return sorted(categories, key=lambda c: int(c["id"]))


def _tail_categories(path: Path, tail: int = 1 << 20) -> list[dict[str, Any]] | None:
    """``categories`` when it is the last key of the json (as in the official files), else None."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - tail))
        text = f.read().decode("utf-8", errors="replace")
    start = text.rfind('"categories"')
    if start < 0:
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(text, text.index("[", start))
    except (ValueError, RecursionError):  # json.JSONDecodeError is a ValueError
        return None
    # only whitespace and the closing brace of the top-level object may follow
    if text[end:].strip() != "}" or not all(isinstance(c, dict) and "id" in c for c in value):
        return None
    return list(value)


class COCODetection(DetectionDataset):
    """COCO detection dataset: ``(image, target)`` as in the contract, ``image_id`` the COCO image id.

    Crowd annotations (``iscrowd=1``) are left out of the targets (the evaluator reads them from the json).
    Boxes are clipped to their image and those with no area dropped. ``stats`` counts images, boxes (kept),
    crowd annotations, clipped and dropped boxes, and images left without boxes (``empty_images``).
    Images are ordered by id.

    Args:
        images: folder holding the split's images (``file_name`` of the json is relative to it).
        annotations: the split's ``instances_*.json``.
        transform: a :class:`~mobiletasks.data.transforms.DetectionTransform`; None: original images.
        keep_empty: keep images without boxes (no annotations, or only crowd or zero-area ones); False
            drops them.

    Raises:
        FileNotFoundError: the folder, the json or image files listed in the json are missing.
        ValueError: the split holds no image (an empty ``images`` list, or no image with a box and
            ``keep_empty=False``): no metric could mean anything.
        ValueError: the json cannot be completed as :func:`~mobiletasks.evaluation.coco_json.complete_dataset`
            says (an unknown category or image id, a bbox that is not four finite numbers, an image id that
            is neither an int nor a str, ...), or an image lacks its file_name or has a bad size (the
            message names the json and the entry). Image ids are kept as the file gives them (int or str).
    """

    def __init__(
        self,
        images: PathLike,
        annotations: PathLike,
        transform: Transform | None = None,
        keep_empty: bool = True,
    ) -> None:
        super().__init__(transform)
        self.images, self.annotations = Path(images), Path(annotations)
        if not self.images.is_dir():
            raise FileNotFoundError(
                f"COCO image folder {self.images} does not exist; pass the folder holding the images of "
                f"{self.annotations.name} (images=...)"
            )
        self.coco = load_coco(self.annotations)
        self.category_ids: list[int] = sorted(self.coco.getCatIds())
        if not self.category_ids:
            raise ValueError(f"COCO annotation file {self.annotations} lists no categories")
        self.class_names = [str(self.coco.cats[c]["name"]) for c in self.category_ids]
        self.records, self.stats = self._build_records(keep_empty)
        if not self.records:
            raise ValueError(
                f"COCO annotation file {self.annotations} lists no images"
                + ("" if keep_empty or not self.coco.imgs else " with a box (keep_empty=False leaves out the others)")
                + ": there is nothing to train on or score; point the split to its images and annotations"
            )
        paths = find_files(
            [r.path for r in self.records],
            f"image files listed in {self.annotations}",
            f"check that images={self.images} is the folder of this split",
        )
        for record, path in zip(self.records, paths, strict=True):
            record.path = path
        self._log_stats(self.annotations)

    def label_to_category_id(self, label: int) -> int:
        """The original COCO category id of a contiguous label."""
        return self.category_ids[label]

    def category_id_to_label(self, category_id: int) -> int:
        """The contiguous label of a COCO category id."""
        try:
            return self.category_ids.index(category_id)
        except ValueError:
            raise ValueError(f"category id {category_id} is not in {self.annotations}") from None

    def _build_records(self, keep_empty: bool) -> tuple[list[Record], dict[str, int]]:
        # load_coco has checked every annotation's image, category and bbox
        label_of = {cat: label for label, cat in enumerate(self.category_ids)}
        per_image: dict[ImageId, list[tuple[list[float], int]]] = {image_id: [] for image_id in self.coco.imgs}
        stats = {"images": 0, "boxes": 0, "crowd": 0, "clipped": 0, "dropped": 0, "empty_images": 0}
        for ann in self.coco.dataset["annotations"]:
            if ann["iscrowd"]:
                stats["crowd"] += 1
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            per_image[ann["image_id"]].append(([x, y, x + w, y + h], label_of[ann["category_id"]]))
        records = []
        for image_id in sorted(per_image, key=id_order):
            info = self.coco.imgs[image_id]
            width, height = self._size(info)
            anns = per_image[image_id]
            boxes = np.array([a[0] for a in anns], dtype=np.float64).reshape(-1, 4)
            labels = np.array([a[1] for a in anns], dtype=np.int64)
            if width and height:
                boxes, keep, clipped = clean_boxes(boxes, width, height)
                stats["clipped"] += clipped
                stats["dropped"] += int((~keep).sum())
                boxes, labels = boxes[keep], labels[keep]
            if len(boxes) == 0:
                stats["empty_images"] += 1
                if not keep_empty:
                    continue
            stats["boxes"] += len(boxes)
            name = info.get("file_name")
            if not isinstance(name, str) or PurePosixPath(name.replace("\\", "/")).name in ("", ".", ".."):
                raise ValueError(
                    f"{self.annotations}: image {describe(image_id)} has file_name {name!r}; give each image the "
                    f"path of its file relative to the image folder ({self.images})"
                )
            path = self.images / name
            if "\\" in name and not path.exists():  # a Windows path (sub\\x.jpg) written by a converter
                path = self.images / name.replace("\\", "/")
            records.append(Record(path, name, image_id, width, height, boxes.astype(np.float32), labels))
        stats["images"] = len(records)
        return records, stats

    def _size(self, info: dict[str, Any]) -> tuple[int, int]:
        """(width, height) of an image entry; (0, 0) where the file does not say (then it is not checked)."""
        width, height = info.get("width"), info.get("height")
        if width is None and height is None:
            return 0, 0
        if not (_whole(width) and _whole(height)):
            raise ValueError(
                f"{self.annotations}: image {describe(info['id'])} has width {width!r} and height {height!r}; "
                "they are the image's size in whole pixels (or leave both out)"
            )
        return int(width or 0), int(height or 0)


def _whole(value: Any) -> bool:
    return is_number(value) and value > 0 and float(value).is_integer()


class COCODetectionDataModule(DetectionDataModule):
    """COCO detection in the official layout under ``root`` (paths below are relative to it).

    Training images are augmented (SSD pipeline, :func:`~mobiletasks.data.transforms.train_transform`)
    and resized to ``image_size``; val/test/predict images keep their size. ``keep_empty`` applies to
    training only: evaluation always sees every image. Without ``test_images``/``test_annotations`` the test
    split is the val split; without ``predict_images`` prediction runs on the val split.

    ``num_classes``, ``class_names`` and ``category_ids`` (label -> COCO category id) come from the
    categories of the train json (read once, lazily, from the file's end), so a subclass may create its
    files in ``__init__`` before they are needed.

    Args:
        root: the dataset folder (e.g. ``coco`` holding ``train2017/``, ``val2017/``, ``annotations/``).
        train_images, val_images, test_images: image folders of the splits, relative to ``root``.
        train_annotations, val_annotations, test_annotations: their instances json files.
        image_size: side of the square training images.
        batch_size: training batch size; ``eval_batch_size`` (default ``batch_size``) for the others.
        num_workers: DataLoader worker processes per process (None: from the CPU count, ``default_num_workers``).
        keep_empty: keep training images without annotations (negatives).
        augment: SSD augmentation for training; False: resize only.
        predict_images: a folder of images (any size) to predict on instead of the val split.

    Example:
        >>> dm = COCODetectionDataModule("data/coco", image_size=320)  # nothing is read yet
        >>> dm.image_size, dm.eval_batch_size
        (320, 32)
    """

    def __init__(
        self,
        root: PathLike,
        train_images: str = "train2017",
        train_annotations: str = "annotations/instances_train2017.json",
        val_images: str = "val2017",
        val_annotations: str = "annotations/instances_val2017.json",
        test_images: str | None = None,
        test_annotations: str | None = None,
        image_size: int = 320,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        keep_empty: bool = True,
        augment: bool = True,
        predict_images: str | None = None,
    ) -> None:
        super().__init__(image_size, batch_size, eval_batch_size, num_workers, augment, predict_images)
        self.save_hyperparameters()
        if (test_images is None) != (test_annotations is None):
            raise ValueError(
                f"set both test_images and test_annotations or neither (got test_images={test_images!r}, "
                f"test_annotations={test_annotations!r})"
            )
        self.root = Path(root)
        self.keep_empty = keep_empty
        self.splits: dict[str, tuple[str, str]] = {
            "train": (train_images, train_annotations),
            "val": (val_images, val_annotations),
        }
        if test_images is not None and test_annotations is not None:
            self.splits["test"] = (test_images, test_annotations)
        self._categories: list[dict[str, Any]] | None = None

    def source(self, split: str) -> str:
        """The configured split that ``split`` reads: "test" without test files and "predict" read "val"."""
        check_split(split, ("train", "val", "test", "predict"))
        return split if split in self.splits else "val"

    def paths(self, split: str) -> tuple[Path, Path]:
        """(image folder, annotation json) of ``split`` under ``root``."""
        images, annotations = self.splits[self.source(split)]
        return self.root / images, self.root / annotations

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The train json's categories, sorted by id (read on first use)."""
        if self._categories is None:
            annotations = self.paths("train")[1]
            if not annotations.is_file():
                raise FileNotFoundError(
                    f"COCO annotation file {annotations} does not exist; set root (now {self.root}) to the dataset "
                    "folder or train_annotations to the instances json relative to it"
                )
            self._categories = read_categories(annotations)
        return self._categories

    @property
    def category_ids(self) -> list[int]:
        """``category_ids[label]`` is the COCO category id of contiguous label ``label``."""
        return [int(c["id"]) for c in self.categories]

    @property
    def class_names(self) -> list[str]:
        return [str(c["name"]) for c in self.categories]

    def make_dataset(self, split: str) -> COCODetection:
        images, annotations = self.paths(split)
        source = self.source(split)
        for path, arg in ((images, f"{source}_images"), (annotations, f"{source}_annotations")):
            if not path.exists():
                raise FileNotFoundError(
                    f"COCO {split} data: {path} does not exist; set root (now {self.root}) to the dataset folder "
                    f"or {arg} to the path relative to it"
                )
        dataset = COCODetection(
            images,
            annotations,
            transform=self.split_transform(split),
            keep_empty=self.keep_empty if split == "train" else True,
        )
        if dataset.category_ids != self.category_ids:
            raise ValueError(
                f"the categories of {annotations} differ from those of {self.paths('train')[1]}; "
                "all splits need the same category list"
            )
        return dataset

    def evaluator(self, split: Literal["val", "test"] = "val") -> COCOEvaluator:
        """A ``COCOEvaluator`` on the split's json, mapping labels back to the original category ids."""
        from mobiletasks.evaluation.coco import COCOEvaluator

        check_split(split, ("val", "test"))
        dataset = self.datasets.get(split)
        coco_gt = dataset.coco if isinstance(dataset, COCODetection) else self.paths(split)[1]
        return COCOEvaluator(coco_gt, self.category_ids)
