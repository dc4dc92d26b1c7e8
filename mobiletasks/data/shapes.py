"""The embedded default dataset: synthetic shapes in COCO layout, generated on first use.

Nothing to download: ``ShapesDetectionDataModule`` writes ``num_images`` seeded images
(``mobiletasks.data.synth``) into ``root`` when they are not there yet, then reads them as any COCO
dataset. ``mobiletasks data synth`` writes the same files by hand.
"""

from __future__ import annotations

from typing import Any

from .coco import COCODetectionDataModule
from .detection import PathLike
from .synth import SHAPE_CLASSES, read_info, write_detection_dataset


class ShapesDetectionDataModule(COCODetectionDataModule):
    """Synthetic shapes (circle, square, triangle, star, cross) on textured backgrounds, COCO layout.

    Args:
        root: where the dataset lives; generated there when absent or made with other settings.
        num_images: images in all (a fifth of them form the val split).
        seed: the generator's seed.
        image_size: side of the generated images and of the training images.
        batch_size, eval_batch_size, num_workers, augment: as ``COCODetectionDataModule``.
    """

    def __init__(
        self,
        root: PathLike = "data/shapes",
        num_images: int = 400,
        seed: int = 0,
        image_size: int = 256,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: bool = True,
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
        )
        self.num_images, self.seed = num_images, seed

    @property
    def categories(self) -> list[dict[str, Any]]:
        # known before the files exist, so LightningCLI can link num_classes at start-up
        return [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CLASSES)]

    def prepare_data(self) -> None:
        info = read_info(self.root) or {}
        wanted = {"task": "detection", "format": "coco", "seed": self.seed, "image_size": self.image_size}
        if any(info.get(k) != v for k, v in wanted.items()) or sum(info.get("images", {}).values()) != self.num_images:
            write_detection_dataset(
                self.root, format="coco", num_images=self.num_images, image_size=self.image_size, seed=self.seed
            )

    def setup(self, stage: str) -> None:
        self.prepare_data()  # also when used without a Trainer
        super().setup(stage)
