"""The embedded default datasets: synthetic shapes, generated on first use.

Nothing to download: each data module writes ``num_images`` seeded images into ``root`` when they are not there
yet (or were made with other settings), then reads them as the real dataset of its layout:
``ShapesDetectionDataModule`` as COCO, ``ShapesSegmentationDataModule`` as VOC segmentation,
``ShapesClassificationDataModule`` as an ImageFolder, ``ShapesAttributesDataModule`` as CelebA.
``mobiletasks data synth`` writes the same files by hand. What they share is :class:`ShapesDataModule`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mobiletasks.common import PathLike
from mobiletasks.data.base import SplitDataModule
from mobiletasks.data.classification.base import ClassificationDataset, ImageFolderDataModule
from mobiletasks.data.classification.celeba import CelebADataModule
from mobiletasks.data.detection.coco import COCODetectionDataModule
from mobiletasks.data.segmentation.datamodules import VOCSegmentationDataModule
from mobiletasks.data.synthetic.classification import (
    ATTRIBUTE_NAMES,
    CLASSIFICATION_CLASSES,
    write_attributes_dataset,
    write_classification_dataset,
)
from mobiletasks.data.synthetic.detection import write_detection_dataset
from mobiletasks.data.synthetic.segmentation import SEGMENTATION_CLASSES, write_segmentation_dataset
from mobiletasks.data.synthetic.shapes import SHAPE_CLASSES
from mobiletasks.data.synthetic.writers import dataset_matches, ensure_dataset

__all__ = [
    "ShapesAttributesDataModule",
    "ShapesClassificationDataModule",
    "ShapesDataModule",
    "ShapesDetectionDataModule",
    "ShapesLayout",
    "ShapesSegmentationDataModule",
]


@dataclass(frozen=True)
class ShapesLayout:
    """What a Shapes data module generates: the synthetic ``task`` dataset in ``format``, written by ``write``
    (``write_detection_dataset``, ...), as ``mobiletasks data synth --task TASK --format FORMAT`` writes it."""

    task: str
    format: str
    write: Callable[..., Path]


class ShapesDataModule(SplitDataModule):
    """The part the Shapes data modules share: a dataset generated into ``root``, not downloaded.

    A Shapes data module derives from this and then from the reader of its ``layout``
    (``COCODetectionDataModule``, ...), which sets ``root``; its ``__init__`` passes its ``num_images``, ``seed``
    and ``image_size`` arguments to :meth:`set_generator`.

    - ``prepare_data`` writes the dataset into ``root`` unless the one there was made with these settings (the
      marker file records them). It writes files only and sets no state; Lightning calls it on one process
      before ``setup``.
    - ``setup`` reads the dataset. Without a Trainer, in one process (``dm.setup("fit")``), it first writes a
      dataset that is missing or was made with other settings; under several processes it writes nothing (they
      would race) and says how to write the dataset instead.
    """

    layout: ClassVar[ShapesLayout]
    root: Path
    num_images: int
    seed: int
    generated_size: int  # the side of the generated images

    def set_generator(self, *, num_images: int, seed: int, image_size: int) -> None:
        """Generate ``num_images`` images (a fifth of them the val split) of ``image_size`` pixels from ``seed``."""
        self.num_images, self.seed, self.generated_size = num_images, seed, image_size

    def generator_settings(self) -> dict[str, Any]:
        """The settings the dataset in ``root`` must have been written with (those its marker file records)."""
        return {
            "task": self.layout.task,
            "format": self.layout.format,
            "num_images": self.num_images,
            "image_size": self.generated_size,
            "seed": self.seed,
        }

    def prepare_data(self) -> None:
        ensure_dataset(self.root, self.layout.write, **self.generator_settings())

    def setup(self, stage: str) -> None:
        settings = self.generator_settings()
        if not dataset_matches(self.root, **settings):
            trainer = self.trainer
            if trainer is not None and trainer.world_size > 1:
                raise FileNotFoundError(
                    f"{self.root} holds no synthetic {self.layout.task} dataset made with num_images="
                    f"{self.num_images}, image_size={self.generated_size}, seed={self.seed}, and {trainer.world_size} "
                    "processes must not all write it: call prepare_data() on one process first (Trainer.fit does), "
                    f"or write it with `mobiletasks data synth --task {self.layout.task} --format "
                    f"{self.layout.format} --out {self.root} --num-images {self.num_images} --image-size "
                    f"{self.generated_size} --seed {self.seed}`"
                )
            ensure_dataset(self.root, self.layout.write, **settings)  # used without a Trainer
        super().setup(stage)


class ShapesDetectionDataModule(ShapesDataModule, COCODetectionDataModule):
    """Synthetic shapes (circle, square, triangle, star, cross) on textured backgrounds, COCO layout.

    Generated into ``root`` on first use (:func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`);
    ``mobiletasks data synth --task detection --format coco`` writes the same files.

    Args:
        root: where the dataset lives; generated there when absent or made with other settings.
        num_images: images in all (a fifth of them form the val split).
        seed: the generator's seed.
        image_size: side of the generated images and of the training images.
        batch_size, eval_batch_size, num_workers, augment: as ``COCODetectionDataModule``.
        predict_images: a folder of your own images (any size) to predict on instead of the val split.
    """

    layout = ShapesLayout("detection", "coco", write_detection_dataset)

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
        self.set_generator(num_images=num_images, seed=seed, image_size=image_size)

    @property
    def categories(self) -> list[dict[str, Any]]:
        # known before the files exist, so LightningCLI can link num_classes at start-up
        return [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CLASSES)]


class ShapesSegmentationDataModule(ShapesDataModule, VOCSegmentationDataModule):
    """Synthetic shapes with exact masks (background + circle, square, triangle, star, cross), VOC layout.

    Generated into ``root`` on first use
    (:func:`~mobiletasks.data.synthetic.segmentation.write_segmentation_dataset`) when absent or made with other
    settings; ``mobiletasks data synth --task segmentation --format voc`` writes the same files.

    Args:
        root: where the dataset lives.
        num_images: images in all (a fifth of them form the val split).
        seed: the generator's seed.
        image_size: side of the generated images (``self.image_size`` is ``crop_size``, as in every
            segmentation data module; the generated side is ``self.generated_size``).
        crop_size, scale_range, batch_size, eval_batch_size, num_workers, augment, predict_images:
            as :class:`~mobiletasks.data.segmentation.datamodules.VOCSegmentationDataModule`.
    """

    layout = ShapesLayout("segmentation", "voc", write_segmentation_dataset)

    def __init__(
        self,
        root: PathLike = "data/shapes-seg",
        num_images: int = 400,
        seed: int = 0,
        image_size: int = 256,
        crop_size: int = 256,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: str | None = None,
    ) -> None:
        super().__init__(
            root,
            crop_size=crop_size,
            scale_range=scale_range,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            augment=augment,
            predict_images=predict_images,
            classes=SEGMENTATION_CLASSES[1:],
        )
        self.set_generator(num_images=num_images, seed=seed, image_size=image_size)


class ShapesClassificationDataModule(ShapesDataModule, ImageFolderDataModule):
    """One synthetic shape per image, classified by its outline; ImageFolder layout ``root/{train,val}/<class>/``.

    Generated into ``root`` on first use
    (:func:`~mobiletasks.data.synthetic.classification.write_classification_dataset`); ``mobiletasks data synth
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

    layout = ShapesLayout("classification", "folder", write_classification_dataset)

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
        self.set_generator(num_images=num_images, seed=seed, image_size=image_size)
        self._class_names = list(CLASSIFICATION_CLASSES)  # known before the files exist


class ShapesAttributesDataModule(ShapesDataModule, CelebADataModule):
    """Shape attributes (Has_Circle, ..., Many_Shapes, Has_Large_Shape, ...) of the detection images, CelebA
    layout: ``root/img_align_celeba/``, ``root/list_attr_celeba.txt``, ``root/list_eval_partition.txt``.

    Generated into ``root`` on first use
    (:func:`~mobiletasks.data.synthetic.classification.write_attributes_dataset`); ``mobiletasks data synth --task
    attributes`` writes the same files. The attributes (``ATTRIBUTE_NAMES``) are known before the files exist.
    There is no test partition: "test" reads the val split.

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

    layout = ShapesLayout("attributes", "celeba", write_attributes_dataset)

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
        self.set_generator(num_images=num_images, seed=seed, image_size=image_size)

    @property
    def class_names(self) -> list[str]:
        if self._names is None and not (self.root / self.attr_file).is_file():
            unknown = [name for name in self.attributes or () if name not in ATTRIBUTE_NAMES]
            if unknown:
                raise ValueError(f"attributes {unknown} are not shape attributes; known: {', '.join(ATTRIBUTE_NAMES)}")
            return list(self.attributes or ATTRIBUTE_NAMES)  # known before the files exist
        return super().class_names

    def make_dataset(self, split: str) -> ClassificationDataset:
        return super().make_dataset("val" if split == "test" else split)  # no test partition
