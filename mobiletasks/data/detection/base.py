"""What COCO and VOC detection share: records, box cleaning, loading, skipping, and the DataModule base.

A dataset parses all annotations when it is built (no image is decoded then), cleans the boxes (clipped to
the image, zero-area ones dropped, both counted in ``stats``) and checks that every image file exists.

Images that exist but cannot be decoded are found only when loaded, possibly deep in an epoch. Such a
sample is skipped instead of ending the run: a warning names the file, ``dataset.skipped`` counts it (shared
with DataLoader workers) and ``__getitem__`` returns ``None``, which
:func:`~mobiletasks.data.collate.detection_collate` leaves out of the batch. The same happens to an image
whose decoded size differs from the size its annotation gives, since its boxes would not fit. How each split
treats skipped samples is in :mod:`mobiletasks.data.skips`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mobiletasks.common import PathLike
from mobiletasks.data.base import SplitDataModule
from mobiletasks.data.collate import detection_collate
from mobiletasks.data.io import ImageReadError, image_to_tensor, list_images, read_image
from mobiletasks.data.skips import SharedCounter, SkipLog
from mobiletasks.data.transforms import train_transform

logger = logging.getLogger(__name__)

Sample = tuple[Tensor, dict[str, Any]]
# (uint8 image [H, W, 3], boxes [N, 4]) -> (image Tensor [3, H', W'], boxes [K, 4], kept rows [K]);
# mobiletasks.data.transforms.DetectionTransform is one
Transform = Callable[[np.ndarray, np.ndarray], tuple[Tensor, Tensor, Tensor]]


@dataclass
class Record:
    """One image and its cleaned annotations (``boxes`` None: an image without annotations, to predict on)."""

    path: Path
    file_name: str
    image_id: int | str  # COCO files may use strings
    width: int = 0  # 0: unknown, not checked
    height: int = 0
    boxes: np.ndarray | None = None  # float32 [N, 4] xyxy pixels
    labels: np.ndarray | None = None  # int64 [N]
    difficult: np.ndarray | None = None  # bool [N] (VOC)


def clean_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip xyxy ``boxes`` to the image; returns (clipped boxes, mask of boxes with positive area, number clipped).

    Example:
        >>> b, keep, n = clean_boxes(np.array([[-5.0, 0, 10, 10], [3, 3, 3, 9]]), 8, 8)
        >>> b[0].tolist(), keep.tolist(), n
        ([0.0, 0.0, 8.0, 8.0], [True, False], 1)
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    single = clipped.astype(np.float32)  # what the targets hold: a box must keep its area there
    keep = (single[:, 2] > single[:, 0]) & (single[:, 3] > single[:, 1])  # False for NaN too
    changed = np.any(clipped != boxes, axis=1) & keep
    return single, keep, int(changed.sum())


def untransformed(image: np.ndarray, boxes: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """The identity :data:`Transform`: the image as a tensor, every box kept."""
    return image_to_tensor(image), torch.from_numpy(np.asarray(boxes, np.float32)), torch.arange(len(boxes))


class DetectionDataset(Dataset):
    """Base of the detection datasets: ``records`` in, ``(image, target)`` samples out (see the module doc).

    Subclasses fill ``records``, ``class_names`` and ``stats``. ``transform`` (a
    :class:`~mobiletasks.data.transforms.DetectionTransform`) augments; None: the original image.
    """

    def __init__(self, transform: Transform | None = None) -> None:
        self.transform = transform
        self.records: list[Record] = []
        self.class_names: list[str] = []
        self.stats: dict[str, int] = {}
        self.skip_log = SkipLog()
        self._dropped = SharedCounter()

    @property
    def skipped(self) -> int:
        """How many times a sample was skipped because its image could not be read (all workers)."""
        return self.skip_log.count

    @property
    def dropped_by_transform(self) -> int:
        """How many boxes the augmentation removed (cropped away or too small), all workers."""
        return self._dropped.value

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | None:
        record = self.records[index]
        try:
            image = read_image(record.path)
        except ImageReadError as err:
            self._skip(record, f"{err}")
            return None
        height, width = image.shape[:2]
        if record.width and (record.width, record.height) != (width, height):
            self._skip(
                record,
                f"image {record.path} is {width}x{height} pixels (after EXIF orientation) but its annotation says "
                f"{record.width}x{record.height}; fix the annotation's width/height or the image",
            )
            return None
        transform = self.transform or untransformed
        target: dict[str, Any] = {"image_id": record.image_id, "file_name": record.file_name}
        if record.boxes is None or record.labels is None:  # an image to predict on
            return transform(image, np.zeros((0, 4), np.float32))[0], target
        image_t, boxes, keep = transform(image, record.boxes)
        if len(keep) < len(record.boxes):
            self._dropped.add(len(record.boxes) - len(keep))
        rows = keep.numpy()
        target["boxes"] = boxes.reshape(-1, 4).float()
        target["labels"] = torch.from_numpy(record.labels[rows]).long()
        if record.difficult is not None:
            target["difficult"] = torch.from_numpy(record.difficult[rows]).bool()
        return image_t, target

    def _skip(self, record: Record, message: str) -> None:
        self.skip_log.add(record.file_name, message)

    def _log_stats(self, source: PathLike) -> None:
        clipped, dropped = self.stats.get("clipped", 0), self.stats.get("dropped", 0)
        if clipped or dropped:
            logger.warning(
                "%s: %d boxes clipped to their image, %d boxes with zero or negative area dropped (of %d)",
                source,
                clipped,
                dropped,
                self.stats.get("boxes", 0) + dropped,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.class_names)} classes, transform={self.transform})"


class UnlabeledImages(DetectionDataset):
    """All images under ``folder`` (any size, sorted by path), for prediction: targets hold only
    ``image_id`` (the index) and ``file_name`` (relative to ``folder``)."""

    def __init__(self, folder: PathLike, transform: Transform | None = None) -> None:
        super().__init__(transform)
        folder = Path(folder)
        paths = list_images(folder, "image folder (predict_images)")
        self.records = [Record(p, p.relative_to(folder).as_posix(), i) for i, p in enumerate(paths)]


class DetectionDataModule(SplitDataModule):
    """Base of the COCO and VOC data modules: the SSD augmentation for training, original images otherwise.

    Subclasses implement ``make_dataset(split)``, ``class_names`` and ``evaluator(split)``. Splits:
    "train" (augmented, ``image_size`` square), "val", "test", "predict" (original images). Datasets are
    built in ``setup`` (or on first use) and kept in ``self.datasets``.
    """

    collate_fn = staticmethod(detection_collate)
    datasets: dict[str, DetectionDataset]  # type: ignore[assignment]

    def __init__(
        self,
        image_size: int,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: PathLike | None = None,
    ) -> None:
        super().__init__(image_size, batch_size, eval_batch_size, num_workers, predict_images)
        self.augment = augment
        # per-split transforms; None = the original image (the model resizes internally)
        self.train_aug: Transform | None = train_transform(image_size, augment=augment)

    def make_dataset(self, split: str) -> DetectionDataset:
        raise NotImplementedError

    def folder_dataset(self, folder: PathLike) -> DetectionDataset:
        return UnlabeledImages(folder, transform=self.predict_aug)

    def dataset(self, split: str) -> DetectionDataset:
        dataset = super().dataset(split)
        assert isinstance(dataset, DetectionDataset)
        return dataset
