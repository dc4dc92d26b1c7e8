"""The embedded default datasets: synthetic shapes, generated on first use.

Nothing to download: each data module writes ``num_images`` seeded images (``mobiletasks.data.synth``)
into ``root`` when they are not there yet (or were made with other settings), then reads them as the real
dataset of its layout: ``ShapesDetectionDataModule`` as COCO, ``ShapesClassificationDataModule`` as an
ImageFolder, ``ShapesAttributesDataModule`` as CelebA. ``mobiletasks data synth`` writes the same files by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobiletasks.common import PathLike

from .classification.base import ClassificationDataset, ImageFolderDataModule
from .classification.celeba import CelebADataModule
from .detection.coco import COCODetectionDataModule
from .synth import SHAPE_CLASSES, ensure_dataset, write_detection_dataset
from .synth_classification import (
    ATTRIBUTE_NAMES,
    CLASSIFICATION_CLASSES,
    write_attributes_dataset,
    write_classification_dataset,
)


class ShapesDetectionDataModule(COCODetectionDataModule):
    """Synthetic shapes (circle, square, triangle, star, cross) on textured backgrounds, COCO layout.

    Args:
        root: where the dataset lives; generated there when absent or made with other settings.
        num_images: images in all (a fifth of them form the val split).
        seed: the generator's seed.
        image_size: side of the generated images and of the training images.
        batch_size, eval_batch_size, num_workers, augment: as ``COCODetectionDataModule``.
        predict_images: a folder of your own images (any size) to predict on instead of the val split.
    """

    def __init__(
        self,
        root: PathLike = "data/shapes",
        num_images: int = 400,
        seed: int = 0,
        image_size: int = 256,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: str | None = None,
    ) -> None:
        super().__init__(
            root,
            train_images="images/train",
            train_annotations="annotations/instances_train.json",
            val_images="images/val",
            val_annotations="annotations/instances_val.json",
            image_size=image_size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            augment=augment,
            predict_images=predict_images,
        )
        self.num_images, self.seed = num_images, seed

    @property
    def categories(self) -> list[dict[str, Any]]:
        # known before the files exist, so LightningCLI can link num_classes at start-up
        return [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CLASSES)]

    def prepare_data(self) -> None:
        generated = {"num_images": self.num_images, "image_size": self.image_size, "seed": self.seed}
        ensure_dataset(self.root, write_detection_dataset, task="detection", format="coco", **generated)

    def setup(self, stage: str) -> None:
        self.prepare_data()  # also when used without a Trainer
        super().setup(stage)


class ShapesClassificationDataModule(ImageFolderDataModule):
    """One synthetic shape per image, classified by its outline; ImageFolder layout ``root/{train,val}/<class>/``.

    Generated into ``root`` on first use
    (:func:`~mobiletasks.data.synth_classification.write_classification_dataset`); ``mobiletasks data synth
    --task classification`` writes the same files. The classes (``CLASSIFICATION_CLASSES``: circle, cross,
    square, star, triangle, sorted as ImageFolder sorts them) are known before the files exist.

    Args:
        root: where the dataset lives.
        num_images: images in all (a fifth of them form the val split, which "test" reads too).
        seed: the generator's seed.
        image_size: side of the generated images and of the training images.
        crop_scale: the area range of the training crops: a crop keeps at least a good part of the shape.
        crop_fraction: 1.0: the evaluation images are the generated ones, whole (a shape may touch the border).
        other arguments: see :class:`~mobiletasks.data.classification.base.ClassificationDataModule`.

    Example:
        >>> ShapesClassificationDataModule("data/shapes-cls").class_names  # nothing is written yet
        ['circle', 'cross', 'square', 'star', 'triangle']
    """

    def __init__(
        self,
        root: PathLike = "data/shapes-cls",
        num_images: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        hflip: bool = True,
        crop_fraction: float = 1.0,
        predict_images: PathLike | None = None,
    ) -> None:
        super().__init__(
            root,
            image_size=image_size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            augment=augment,
            crop_scale=crop_scale,
            hflip=hflip,
            crop_fraction=crop_fraction,
            predict_images=predict_images,
        )
        self.num_images, self.seed = num_images, seed
        self._class_names = list(CLASSIFICATION_CLASSES)  # known before the files exist

    def prepare_data(self) -> None:
        generated = {"num_images": self.num_images, "image_size": self.image_size, "seed": self.seed}
        ensure_dataset(self.root, write_classification_dataset, task="classification", format="folder", **generated)

    def setup(self, stage: str) -> None:
        self.prepare_data()  # also when used without a Trainer
        super().setup(stage)


class ShapesAttributesDataModule(CelebADataModule):
    """Shape attributes (Has_Circle, ..., Many_Shapes, Has_Large_Shape, ...) of the detection images, CelebA
    layout: ``root/img_align_celeba/``, ``root/list_attr_celeba.txt``, ``root/list_eval_partition.txt``.

    Generated into ``root`` on first use (:func:`~mobiletasks.data.synth_classification.write_attributes_dataset`);
    ``mobiletasks data synth --task attributes`` writes the same files. The attributes (``ATTRIBUTE_NAMES``)
    are known before the files exist. There is no test partition: "test" reads the val split.

    Args:
        root: where the dataset lives.
        num_images: images in all (a fifth of them form the val split).
        seed: the generator's seed.
        image_size: side of the generated images and of the training images.
        crop_scale: mild crops: a strong one would cut shapes away and change the image's attributes.
        hflip: no attribute tells left from right, so flips keep the labels true.
        crop_fraction: 1.0: the evaluation images are the generated ones, whole.
        attributes: train on these attributes only, in this order.
        other arguments: see :class:`~mobiletasks.data.classification.base.ClassificationDataModule`.

    Example:
        >>> ShapesAttributesDataModule("data/shapes-attr").class_names[:3]  # nothing is written yet
        ['Has_Circle', 'Has_Square', 'Has_Triangle']
    """

    def __init__(
        self,
        root: PathLike = "data/shapes-attr",
        num_images: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        hflip: bool = True,
        crop_fraction: float = 1.0,
        predict_images: PathLike | None = None,
        attributes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            root,
            image_size=image_size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            augment=augment,
            crop_scale=crop_scale,
            hflip=hflip,
            crop_fraction=crop_fraction,
            predict_images=predict_images,
            attributes=attributes,
        )
        self.num_images, self.seed = num_images, seed

    @property
    def class_names(self) -> list[str]:
        if self._names is None and not (self.root / self.attr_file).is_file():
            unknown = [name for name in self.attributes or () if name not in ATTRIBUTE_NAMES]
            if unknown:
                raise ValueError(f"attributes {unknown} are not shape attributes; known: {', '.join(ATTRIBUTE_NAMES)}")
            return list(self.attributes or ATTRIBUTE_NAMES)  # known before the files exist
        return super().class_names

    def prepare_data(self) -> None:
        generated = {"num_images": self.num_images, "image_size": self.image_size, "seed": self.seed}
        ensure_dataset(self.root, write_attributes_dataset, task="attributes", format="celeba", **generated)

    def setup(self, stage: str) -> None:
        self.prepare_data()  # also when used without a Trainer
        super().setup(stage)

    def make_dataset(self, split: str) -> ClassificationDataset:
        return super().make_dataset("val" if split == "test" else split)  # no test partition
