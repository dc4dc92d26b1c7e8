"""Images named on the command line, as the data module a model's task predicts with (``mobiletasks infer``).

:func:`find_images` turns image files, folders (searched recursively, sorted) and glob patterns into the images
to predict on, each with its name in the outputs: its path relative to the folder given, so that nested folders
keep their structure (``cam1/0001.jpg``, ``cam2/0001.jpg``). :class:`InferenceDataModule` serves them as the
task's own data modules serve their ``predict_images`` folder: original images for detection and segmentation
(the models resize inside), resized and center cropped ones for classifiers
(:func:`~mobiletasks.data.transforms.classification_eval_transform`), batched by the task's collate function.
It needs no training data: the class names, COCO category ids and preprocessing come from what a checkpoint or
an ONNX file recorded. An image that cannot be read is skipped with a warning and counted (``skipped``).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from mobiletasks.common import PathLike
from mobiletasks.data.base import check_split
from mobiletasks.data.classification.base import ClassificationDataset
from mobiletasks.data.collate import classification_collate, detection_collate, segmentation_collate
from mobiletasks.data.detection.base import DetectionDataset, Record
from mobiletasks.data.io import IMAGE_SUFFIXES, split_images, warn_passed_over
from mobiletasks.data.segmentation.datasets import MaskRecord, SegmentationDataset, identity_lut
from mobiletasks.data.transforms import classification_eval_transform

logger = logging.getLogger(__name__)

__all__ = ["KINDS", "InferenceDataModule", "InputImage", "Kind", "find_images"]

Kind = Literal["classification", "attributes", "detection", "segmentation"]
KINDS: tuple[Kind, ...] = ("classification", "attributes", "detection", "segmentation")
_COLLATE: dict[str, Callable[[list[Any]], Any]] = {
    "classification": classification_collate,
    "attributes": classification_collate,
    "detection": detection_collate,
    "segmentation": segmentation_collate,
}


@dataclass(frozen=True)
class InputImage:
    """An image to predict on: the file, and its name in the outputs (a POSIX path relative to the inputs' folder)."""

    path: Path
    file_name: str


def find_images(inputs: Sequence[PathLike], exclude: Sequence[PathLike] = ()) -> list[InputImage]:
    """The images of ``inputs``, in the order given, each found once.

    Each input is an image file (taken whatever its suffix), a folder (every image under it, by suffix, any depth,
    sorted by path; other files passed over with a warning) or a glob pattern (``photos/*.jpg``,
    ``data/**/*.png``: expanded here, sorted; a folder it matches counts as a folder). File names are relative to
    the folder of the inputs: the folder given, the folder of a file, the fixed start of a pattern; where inputs
    lie in different folders, their deepest common folder, so that names never clash.

    Args:
        inputs: files, folders and patterns.
        exclude: folders whose files are left out (the output folder, so that a run never reads its own pictures).

    Raises:
        FileNotFoundError: an input that is no file, no folder and no pattern.
        ValueError: an input under which no image is found (named, with what it holds).

    Example:
        >>> find_images(["no/such/folder"])
        Traceback (most recent call last):
        ...
        FileNotFoundError: no/such/folder is no file or folder (nor a glob pattern with * ? or [...]); check the path
    """
    if not inputs:
        raise ValueError("no inputs: name image files, folders or glob patterns")
    left_out = [os.path.abspath(p) for p in exclude]
    found: list[tuple[str, list[Path]]] = []  # (the folder names are relative to, files), per input
    for item in inputs:
        base, files = _expand(str(item))
        kept = [p for p in files if not any(_inside(os.path.abspath(p), folder) for folder in left_out)]
        if not kept:
            where = f" outside {', '.join(str(e) for e in exclude)} (the output)" if files else ""
            raise ValueError(
                f"no images found in {item}{where}: name image files (.jpg, .png, ...), folders that hold them, or "
                "a glob pattern such as 'photos/**/*.jpg' (quoted)"
            )
        found.append((os.path.abspath(base), kept))
    root = os.path.commonpath([base for base, _ in found])
    images, seen = [], set()
    for _, files in found:
        for path in files:
            absolute = os.path.abspath(path)
            if absolute in seen:
                continue
            seen.add(absolute)
            images.append(InputImage(path, Path(os.path.relpath(absolute, root)).as_posix()))
    return images


def _expand(item: str) -> tuple[Path, list[Path]]:
    """(the folder names are relative to, the image files) of one input."""
    path = Path(item).expanduser()
    if path.is_dir():
        return path, _folder_images(path)
    if path.is_file():
        return path.parent, [path]
    if not glob.has_magic(item):
        raise FileNotFoundError(f"{item} is no file or folder (nor a glob pattern with * ? or [...]); check the path")
    files: list[Path] = []
    others: list[Path] = []
    for match in sorted(glob.glob(os.path.expanduser(item), recursive=True)):
        p = Path(match)
        if p.is_dir():
            files += _folder_images(p)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        elif p.is_file():
            others.append(p)
    base = _pattern_base(item)
    warn_passed_over(base, others)
    return base, files


def _folder_images(folder: Path) -> list[Path]:
    images, others = split_images(folder)
    warn_passed_over(folder, others)
    return images


def _pattern_base(pattern: str) -> Path:
    """The folder of a glob pattern's fixed start: ``data/cams/**/*.jpg`` -> ``data/cams``."""
    fixed: list[str] = []
    for part in Path(os.path.expanduser(pattern)).parts[:-1]:  # the last part names files, wildcard or not
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class InferenceDataModule(L.LightningDataModule):
    """The "predict" split of ``images`` for a model of task ``kind``, with the metadata the prediction writers
    read (``class_names``, ``category_ids``), in one process (prediction from the command line runs on one device).

    Args:
        images: from :func:`find_images`.
        kind: ``classification``, ``attributes``, ``detection`` or ``segmentation``.
        class_names: one per class (detection: without background; segmentation: with it); empty: the writers name
            classes by their index.
        category_ids: the dataset's id of each class (COCO), written to a detector's ``predictions.json``.
        image_size: a classifier's input side.
        crop_fraction: a classifier's images are resized to ``image_size / crop_fraction``, then center cropped.
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0: read in the main process).

    Example:
        >>> dm = InferenceDataModule([InputImage(Path("a.jpg"), "a.jpg")], "detection", ["cat"], [17])
        >>> dm.dataset("predict").records[0].file_name, dm.category_ids
        ('a.jpg', [17])
    """

    def __init__(
        self,
        images: Sequence[InputImage],
        kind: Kind,
        class_names: Sequence[str] = (),
        category_ids: Sequence[int] | None = None,
        image_size: int = 224,
        crop_fraction: float = 0.875,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown task {kind!r}; expected one of {', '.join(KINDS)}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"batch_size is {batch_size} and num_workers {num_workers}; batch_size must be at least 1 and "
                "num_workers at least 0"
            )
        self.images = list(images)
        self.kind = kind
        self.class_names = list(class_names)
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, Any] = {}  # the tasks read the split's skip log here

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset(self, split: str = "predict") -> Any:
        """The dataset of the images, built on first use; "predict" is the only split."""
        check_split(split, ("predict",))
        if split not in self.datasets:
            self.datasets[split] = self._build()
        return self.datasets[split]

    @property
    def skipped(self) -> int:
        """Images that could not be read so far (all workers)."""
        return self.dataset().skip_log.count if self.datasets else 0

    def _build(self) -> Any:
        paths, names = [i.path for i in self.images], [i.file_name for i in self.images]
        if self.kind == "detection":
            detection = DetectionDataset(transform=None)  # original images, as a detection data module predicts
            detection.records = [Record(p, n, k) for k, (p, n) in enumerate(zip(paths, names, strict=True))]
            detection.class_names = self.class_names
            return detection
        if self.kind == "segmentation":  # original images, no masks, as SegmentationDataModule.folder_dataset
            records = [MaskRecord(p, None, n, k) for k, (p, n) in enumerate(zip(paths, names, strict=True))]
            return SegmentationDataset(records, self.class_names, identity_lut(0))
        transform = classification_eval_transform(self.image_size, self.crop_fraction)
        classification = ClassificationDataset(paths, None, self.class_names, transform=transform)
        classification.file_names = names
        return classification

    def setup(self, stage: str) -> None:
        if stage != "predict":
            raise ValueError(f"InferenceDataModule holds images to predict on, not data to {stage} with")
        self.dataset()

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dataset(),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_COLLATE[self.kind],
        )
