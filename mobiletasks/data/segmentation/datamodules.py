"""Semantic segmentation data modules: Pascal VOC 2012 (+ SBD) and COCO-style mask folders.

Samples follow the contract: ``(image, target)``, image float32 [3, H, W] in [0, 1], target ``mask`` int64
[H, W] (labels, 255 ignored), ``image_id``, ``file_name``; batches come from
:func:`~mobiletasks.data.collate.segmentation_collate`. ``num_classes`` counts background. Training images
go through :func:`~mobiletasks.data.transforms.segmentation_train_transform` (random scale, pad with 255,
``crop_size`` crop, flip); val/test/predict images keep their size. The datasets and the rules on bad data
are in :mod:`mobiletasks.data.segmentation.datasets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mobiletasks.common import IGNORE_INDEX, PathLike
from mobiletasks.data.base import SplitDataModule, check_split
from mobiletasks.data.collate import segmentation_collate
from mobiletasks.data.detection.voc import VOC_CLASSES, check_classes
from mobiletasks.data.segmentation.datasets import (
    COCO_VOC_CATEGORY_IDS,
    MaskFolder,
    SegmentationDataset,
    SegTransform,
    VOCSegmentation,
    coco_voc_lut,
    identity_lut,
    read_class_map,
)
from mobiletasks.data.transforms import segmentation_train_transform

if TYPE_CHECKING:
    from mobiletasks.evaluation.segmentation import SegmentationEvaluator

__all__ = [
    "COCO_VOC_CATEGORY_IDS",
    "COCOSegmentationDataModule",
    "MaskFolder",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentation",
    "VOCSegmentationDataModule",
]


class SegmentationDataModule(SplitDataModule):
    """Base of the segmentation data modules: the scale/crop/flip augmentation for training.

    Subclasses implement ``make_dataset(split)`` and ``class_names``. Splits: "train" (augmented,
    ``crop_size`` squares), "val", "test", "predict" (original images; ``predict_images``: any folder).
    ``image_size`` equals ``crop_size`` (LightningCLI links it to the task).
    """

    collate_fn = staticmethod(segmentation_collate)
    datasets: dict[str, SegmentationDataset]  # type: ignore[assignment]

    def __init__(
        self,
        crop_size: int = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: PathLike | None = None,
    ) -> None:
        super().__init__(crop_size, batch_size, eval_batch_size, num_workers, predict_images)
        self.crop_size = crop_size
        if len(scale_range) != 2:
            raise ValueError(f"scale_range must be two factors (low, high), e.g. (0.5, 2.0), got {scale_range}")
        self.train_aug: SegTransform | None = segmentation_train_transform(
            crop_size, (scale_range[0], scale_range[1]), augment
        )

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.class_names)

    def make_dataset(self, split: str) -> SegmentationDataset:
        raise NotImplementedError

    def folder_dataset(self, folder: PathLike) -> SegmentationDataset:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"predict_images folder {folder} does not exist")
        return MaskFolder(folder, None, self.class_names, identity_lut(0))

    def dataset(self, split: str) -> SegmentationDataset:
        """The dataset of ``split``, built on first use; its masks are checked then (``check_masks``)."""
        built = split in self.datasets
        dataset = super().dataset(split)
        assert isinstance(dataset, SegmentationDataset)
        if not built:
            dataset.check_masks()
        return dataset

    def evaluator(self, split: Literal["val", "test"] = "val") -> SegmentationEvaluator:
        """A ``SegmentationEvaluator`` over ``class_names`` ignoring 255."""
        from mobiletasks.evaluation.segmentation import SegmentationEvaluator

        check_split(split, ("val", "test"))
        return SegmentationEvaluator(self.num_classes, self.class_names, ignore_index=IGNORE_INDEX)


class VOCSegmentationDataModule(SegmentationDataModule):
    """Pascal VOC semantic segmentation from a VOCdevkit folder (21 classes: background + the 20 VOC classes).

    Without ``test_split`` the test split is the val split; without ``predict_images`` prediction runs on
    the val split. ``train_split="train_aug"`` reads the SBD-augmented list
    (``ImageSets/Segmentation/train_aug.txt``, masks in ``SegmentationClassAug/``).

    Args:
        root: the VOCdevkit folder, holding ``VOC<year>/``.
        train_split, val_split, test_split: names of lists in ``ImageSets/Segmentation/``.
        year: the VOC year folder.
        crop_size: side of the square training crops (513 in DeepLab); also ``image_size``.
        scale_range: the random scale factors of training images.
        batch_size: training batch size; ``eval_batch_size`` (default ``batch_size``) for the others.
        num_workers: DataLoader worker processes per process (None: from the CPU count, ``default_num_workers``).
        augment: random scale, crop and flip for training; False: pad and center crop only.
        predict_images: a folder of images to predict on instead of the val split.
        classes: object class names (default the 20 VOC classes); background is prepended.

    Example:
        >>> dm = VOCSegmentationDataModule("data/VOCdevkit")  # nothing is read yet
        >>> dm.num_classes, dm.class_names[:2], dm.image_size
        (21, ['background', 'aeroplane'], 513)
    """

    def __init__(
        self,
        root: PathLike,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        year: str = "2012",
        crop_size: int = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: str | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(crop_size, scale_range, batch_size, eval_batch_size, num_workers, augment, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        self.year = str(year)
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split, "predict": val_split}
        self._classes = check_classes(classes)

    @property
    def class_names(self) -> list[str]:
        return ["background", *self._classes]

    def make_dataset(self, split: str) -> VOCSegmentation:
        check_split(split, ("train", "val", "test", "predict"))
        return VOCSegmentation(
            self.root, self.splits[split], self.year, classes=self._classes, transform=self.split_transform(split)
        )


class COCOSegmentationDataModule(SegmentationDataModule):
    """Image folders with index-mask folders (``<mask folder>/<image stem>.png``), e.g. coco128's ``semantic/``.

    Paths are relative to ``root``. Images without a mask are left out (counted in the dataset's
    ``stats["no_mask"]``). The class map turns pixel values into labels:

    - default (``classes_json=None``): pixel value = COCO category id; the 20 categories VOC shares become
      the VOC labels 1..20 (torchvision's references/segmentation ``CAT_LIST``), everything else, 0 included,
      background 0. 21 classes, named as in VOC.
    - ``classes_json``: a JSON object ``{"<pixel value>": "<class name>" | null}``; classes in order of their
      smallest pixel value, ``null`` and unlisted values ignored (255). See
      :func:`~mobiletasks.data.segmentation.datasets.read_class_map`.

    Without ``test_images``/``test_masks`` the test split is the val split.

    Example:
        >>> dm = COCOSegmentationDataModule("data/coco", crop_size=321)
        >>> dm.num_classes, dm.class_names[15], dm.image_size
        (21, 'person', 321)
    """

    def __init__(
        self,
        root: PathLike,
        train_images: str = "images/train2017",
        train_masks: str = "semantic/train2017",
        val_images: str = "images/val2017",
        val_masks: str = "semantic/val2017",
        classes_json: str | None = None,
        test_images: str | None = None,
        test_masks: str | None = None,
        crop_size: int = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: str | None = None,
    ) -> None:
        super().__init__(crop_size, scale_range, batch_size, eval_batch_size, num_workers, augment, predict_images)
        self.save_hyperparameters()
        if (test_images is None) != (test_masks is None):
            raise ValueError(
                f"set both test_images and test_masks or neither (got test_images={test_images!r}, "
                f"test_masks={test_masks!r})"
            )
        self.root = Path(root)
        self.splits = {"train": (train_images, train_masks), "val": (val_images, val_masks)}
        if test_images is not None and test_masks is not None:
            self.splits["test"] = (test_images, test_masks)
        self.classes_json = classes_json
        self._class_map: tuple[list[str], np.ndarray] | None = None

    def class_map(self) -> tuple[list[str], np.ndarray]:
        """(class names, lookup table pixel value -> label), read once."""
        if self._class_map is None:
            if self.classes_json is None:
                self._class_map = (["background", *VOC_CLASSES], coco_voc_lut())
            else:
                self._class_map = read_class_map(self.root / self.classes_json)
        return self._class_map

    @property
    def class_names(self) -> list[str]:
        return list(self.class_map()[0])

    def make_dataset(self, split: str) -> MaskFolder:
        check_split(split, ("train", "val", "test", "predict"))
        source = split if split in self.splits else "val"
        names, lut = self.class_map()
        paths = [self.root / p for p in self.splits[source]]
        for path, arg in zip(paths, (f"{source}_images", f"{source}_masks"), strict=True):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"{split} data: folder {path} does not exist; set root (now {self.root}) to the dataset folder "
                    f"or {arg} to the folder relative to it"
                )
        return MaskFolder(paths[0], paths[1], names, lut, transform=self.split_transform(split))
