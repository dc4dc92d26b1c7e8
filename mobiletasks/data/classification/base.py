"""Image classification data: one dataset class for single-label and multi-label (attribute) targets, the
data-module base, and ``ImageFolderDataModule`` (a folder per class).

Samples are ``(image, target)``: image float32 [3, S, S] in [0, 1] (``S = image_size``; not normalized:
the model normalizes), target ``{"file_name": str, "index": int}`` plus ``labels`` when the split is labelled:
an int64 class index (single-label) or float32 [K] of 0/1 (multi-label). Batches come from
:func:`~mobiletasks.data.collate.classification_collate`.

Training images get Inception-style random resized crops and flips, evaluation images a resize and a center
crop (:mod:`mobiletasks.data.transforms`). An image that cannot be decoded is skipped, logged and counted
(``dataset.skipped``, shared with DataLoader workers), as in detection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mobiletasks.common import PathLike
from mobiletasks.data.base import SplitDataModule, check_split
from mobiletasks.data.collate import classification_collate
from mobiletasks.data.io import ImageReadError, list_images, read_image, split_images, warn_passed_over
from mobiletasks.data.skips import SkipLog
from mobiletasks.data.transforms import classification_eval_transform, classification_train_transform

if TYPE_CHECKING:
    from mobiletasks.evaluation.classification import AttributeEvaluator, ClassificationEvaluator

logger = logging.getLogger(__name__)
__all__ = ["ClassificationDataModule", "ClassificationDataset", "ImageFolderDataModule"]

ImageTransform = Callable[[np.ndarray], Tensor]


class ClassificationDataset(Dataset):
    """Images and their labels.

    Args:
        paths: the image files.
        targets: int64 [N] class indices, float32 [N, K] 0/1 attributes, or None (unlabelled: to predict on).
        class_names: the classes (or attributes), in label order.
        root: ``file_name`` of a sample is its path relative to ``root`` (default: the file name).
        transform: uint8 image [H, W, 3] -> float Tensor [3, S, S].
        boxes: float [N, 4] xyxy pixels: crop each image to its box before the transform (CUB's bounding boxes).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        targets: np.ndarray | None,
        class_names: Sequence[str],
        root: PathLike | None = None,
        transform: ImageTransform | None = None,
        boxes: np.ndarray | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        for name, array in (("targets", targets), ("boxes", boxes)):
            if array is not None and len(array) != len(self.paths):
                raise ValueError(f"{len(self.paths)} images but {len(array)} {name}")
        self.targets = targets
        self.class_names = list(class_names)
        self.boxes = boxes
        self.transform = transform or classification_eval_transform(224)
        self.file_names = [p.relative_to(root).as_posix() if root else p.name for p in self.paths]
        self.skip_log = SkipLog()

    @property
    def multi_label(self) -> bool:
        return self.targets is not None and self.targets.ndim == 2

    @property
    def skipped(self) -> int:
        """How many times a sample was skipped because its image could not be read (all workers)."""
        return self.skip_log.count

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]] | None:
        try:
            image = read_image(self.paths[index])
        except ImageReadError as err:
            self.skip_log.add(self.file_names[index], str(err))
            return None
        if self.boxes is not None:
            x0, y0, x1, y1 = np.round(self.boxes[index]).astype(int)
            h, w = image.shape[:2]
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 > x0 and y1 > y0:  # a box outside the image: the whole image
                image = image[y0:y1, x0:x1]
        target: dict[str, Any] = {"file_name": self.file_names[index], "index": index}
        if self.targets is not None:
            target["labels"] = torch.as_tensor(self.targets[index])
        return self.transform(image), target

    def __repr__(self) -> str:
        kind = "attributes" if self.multi_label else "classes"
        return f"{type(self).__name__}({len(self)} images, {len(self.class_names)} {kind}, transform={self.transform})"


class ClassificationDataModule(SplitDataModule):
    """Base of the classification and attribute data modules.

    Subclasses implement ``class_names`` and ``make_dataset(split)`` (building a :class:`ClassificationDataset`
    with ``self.split_transform(split)``); ``multi_label`` (a class attribute) picks the evaluator.

    Args:
        image_size: the side of training and evaluation images (the paper's resolution multiplier: 224, 192,
            160, 128).
        batch_size, eval_batch_size, num_workers: the loaders'.
        augment: random resized crops and flips for training (False: the evaluation pipeline).
        crop_scale: the area range of the random crops (Inception's ``(0.08, 1.0)``).
        hflip: flip training images horizontally at random (turn off when labels know left from right).
        crop_fraction: evaluation images are resized to ``image_size / crop_fraction``, then center cropped.
        predict_images: a folder of images to predict on instead of the val split.
    """

    collate_fn = staticmethod(classification_collate)
    multi_label = False

    def __init__(
        self,
        image_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        crop_fraction: float = 0.875,
        predict_images: PathLike | None = None,
    ) -> None:
        super().__init__(image_size, batch_size, eval_batch_size, num_workers, predict_images)
        if len(crop_scale) != 2:
            raise ValueError(f"crop_scale must be two area fractions (low, high), e.g. (0.08, 1.0), got {crop_scale}")
        self.train_aug = classification_train_transform(image_size, (crop_scale[0], crop_scale[1]), hflip, augment)
        self.crop_fraction = crop_fraction
        self.val_aug = self.test_aug = self.predict_aug = classification_eval_transform(image_size, crop_fraction)

    def folder_dataset(self, folder: PathLike) -> ClassificationDataset:
        return ClassificationDataset(
            list_images(folder, "image folder (predict_images)"), None, self.class_names, folder, self.predict_aug
        )

    def evaluator(self, split: str) -> ClassificationEvaluator | AttributeEvaluator:
        """Top-1/top-5 accuracy (single-label) or per-attribute AP and accuracy (multi-label) over ``split``."""
        from mobiletasks.evaluation.classification import AttributeEvaluator, ClassificationEvaluator

        check_split(split, ("val", "test"))
        if self.multi_label:
            return AttributeEvaluator(self.class_names)
        return ClassificationEvaluator(self.num_classes, class_names=self.class_names)

    def dataset(self, split: str) -> ClassificationDataset:
        dataset = super().dataset(split)
        assert isinstance(dataset, ClassificationDataset)
        return dataset


class ImageFolderDataModule(ClassificationDataModule):
    """A folder per class, torchvision's ``ImageFolder`` layout: ``root/<split>/<class>/<image>``.

    The classes are the sub-folders of the train folder, sorted; the val and test folders may lack classes
    but not add any. Without a test folder, "test" reads the val split; "predict" reads the val split unless
    ``predict_images`` is set.

    Args:
        root: the dataset folder.
        train_dir, val_dir, test_dir: the split folders under ``root`` (``test_dir`` None: none).
        other arguments: see :class:`ClassificationDataModule`.
    """

    def __init__(
        self,
        root: PathLike,
        train_dir: str = "train",
        val_dir: str = "val",
        test_dir: str | None = None,
        image_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        crop_fraction: float = 0.875,
        predict_images: PathLike | None = None,
    ) -> None:
        loader = (image_size, batch_size, eval_batch_size, num_workers)
        super().__init__(*loader, augment, crop_scale, hflip, crop_fraction, predict_images)
        self.root = Path(root)
        self.split_dirs = {"train": train_dir, "val": val_dir, "test": test_dir or val_dir, "predict": val_dir}
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            folder = self.root / self.split_dirs["train"]
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"train folder {folder} does not exist; ImageFolderDataModule reads root/<split>/<class>/<image> "
                    "(set root, or train_dir)"
                )
            names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not names:
                raise ValueError(f"train folder {folder} holds no class folders; expected {folder}/<class>/<image>")
            self._class_names = names
        return self._class_names

    def make_dataset(self, split: str) -> ClassificationDataset:
        folder = self.root / self.split_dirs[split]
        if not folder.is_dir():
            raise FileNotFoundError(f"{split} folder {folder} does not exist; set root or {split}_dir")
        index = {name: i for i, name in enumerate(self.class_names)}
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = [p.name for p in classes if p.name not in index]
        if unknown:
            raise ValueError(
                f"{split} folder {folder} has class folders the train folder lacks: {', '.join(unknown[:5])}; "
                "every class must have training images"
            )
        paths, labels, passed_over, empty = [], [], [], []
        for class_dir in classes:
            files, others = split_images(class_dir)
            if not files and split == "train":
                found = f"; it holds {len(others)} other files, e.g. {others[0].name}" if others else ""
                raise ValueError(f"class folder {class_dir} holds no images (files Pillow reads, by suffix){found}")
            if not files:
                empty.append(class_dir.name)
            paths += files
            labels += [index[class_dir.name]] * len(files)
            passed_over += others
        if not paths:
            raise ValueError(f"{split} folder {folder} holds no images in class folders")
        warn_passed_over(folder, passed_over)
        absent = [name for name in self.class_names if name not in {p.name for p in classes}] + empty
        if absent:
            logger.warning(
                "%s folder %s has no images of %d of the %d classes (%s): its metrics do not cover them",
                split,
                folder,
                len(absent),
                self.num_classes,
                ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else ""),
            )
        targets = np.asarray(labels, dtype=np.int64)
        return ClassificationDataset(paths, targets, self.class_names, folder, self.split_transform(split))
