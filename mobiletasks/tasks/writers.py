"""Prediction writers: ``mobiletasks predict`` saves what the model found, as data and as pictures."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes

from ..data.io import save_png
from ..evaluation.distributed import gather, total

log = logging.getLogger(__name__)
T = TypeVar("T")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def split_file_names(trainer: L.Trainer, split: str = "predict") -> list[str]:
    """The file names of a split of the trainer's data module, in dataset order ([] when it does not say)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "dataset"):
        return []
    dataset = datamodule.dataset(split)
    names = getattr(dataset, "file_names", None)
    if names is None:
        names = [getattr(r, "file_name", None) for r in getattr(dataset, "records", [])]
    return [str(n) for n in names] if all(n is not None for n in names) else []


def gather_in_order(
    records: list[T],
    order: Sequence[str],
    file_name: Callable[[T], str] = lambda r: r["file_name"],  # type: ignore[index]
) -> list[T]:
    """The records of every process, in the order of ``order``'s file names (stable; records of names not in
    ``order`` last); ``file_name`` reads a record's (default: its ``"file_name"`` key). In one process:
    ``records``, unchanged."""
    everyone = [r for rank in gather(records) for r in rank]
    if len(everyone) == len(records):
        return records
    place = {name: k for k, name in reversed(list(enumerate(order)))}
    return sorted(everyone, key=lambda r: place.get(str(file_name(r)), len(place)))


class OutputNames:
    """One output file per input: the input's path relative to its folder, with ``suffix``, so that
    ``cam1/0001.jpg`` and ``cam2/0001.jpg`` get ``cam1/0001.png`` and ``cam2/0001.png``. Where two inputs would
    still share a name (``a.jpg`` and ``a.png``), the later one keeps its own suffix (``a.jpg.png``), then a
    number. Parts that would leave the output folder (absolute paths, ``..``) are dropped.

    ``file_names``: every input, in order, named up front, so that each process of a distributed run gives an
    input the name one process would; ``place(file_name)`` returns its position among them too.
    """

    def __init__(self, suffix: str = ".png", file_names: Sequence[str] = ()) -> None:
        self.suffix = suffix
        self.taken: set[str] = set()
        self.planned: dict[str, list[tuple[int, str]]] = {}
        for k, name in enumerate(file_names):
            self.planned.setdefault(name, []).append((k, self._new(name)))

    def place(self, file_name: str) -> tuple[int | None, str]:
        """The input's position among ``file_names`` (None: not among them) and its output name."""
        planned = self.planned.get(file_name)
        return planned.pop(0) if planned else (None, self._new(file_name))

    def __call__(self, file_name: str) -> str:
        return self.place(file_name)[1]

    def _new(self, file_name: str) -> str:
        parts = [p for p in PurePosixPath(str(file_name).replace("\\", "/")).parts if p not in ("/", ".", "..")]
        relative = PurePosixPath(*parts) if parts else PurePosixPath("image")
        candidates = [relative.with_suffix(self.suffix).as_posix(), relative.as_posix() + self.suffix]
        name = next((c for c in candidates if c not in self.taken), None)
        k = 1
        while name is None or name in self.taken:
            name = f"{relative.as_posix()}.{k}{self.suffix}"
            k += 1
        self.taken.add(name)
        return name


def draw_detections(
    image: Tensor, prediction: dict[str, Tensor], class_names: Sequence[str], score_threshold: float
) -> Tensor:
    """``image`` (float [0, 1], 3 x H x W) with the boxes scoring at least ``score_threshold`` drawn and named."""
    keep = prediction["scores"] >= score_threshold
    boxes, labels, scores = prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep]
    names = [
        f"{class_names[i] if i < len(class_names) else i} {s:.2f}"
        for i, s in zip(labels.tolist(), scores.tolist(), strict=True)
    ]
    palette = torch.tensor(
        [
            [230, 25, 75],
            [60, 180, 75],
            [255, 225, 25],
            [0, 130, 200],
            [245, 130, 48],
            [145, 30, 180],
            [70, 240, 240],
            [240, 50, 230],
            [210, 245, 60],
            [250, 190, 212],
        ]
    )
    colors = [tuple(c) for c in palette[labels % len(palette)].tolist()]
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if not len(boxes):
        return pixels
    return draw_bounding_boxes(pixels, boxes.cpu(), labels=names, colors=colors, width=2)


class DetectionWriter(BasePredictionWriter):
    """Writes ``predictions.json`` (COCO results format, the data's original category ids, and each detection's
    ``file_name``) and, for the first ``max_images`` images, ``images/<file name>.png`` with the boxes and class
    names drawn (one picture per input, see :class:`OutputNames`). Under several processes each draws its own
    images and the first process writes the detections of all, in the order of the images.

    Args:
        output_dir: where to write; relative paths are relative to the working directory.
        score_threshold: boxes drawn in the pictures score at least this (the JSON keeps all detections).
        max_images: pictures to draw (None: all).
    """

    def __init__(self, output_dir: str = "predictions", score_threshold: float = 0.3, max_images: int | None = 32):
        super().__init__(write_interval="batch")
        self.output_dir, self.score_threshold, self.max_images = Path(output_dir), score_threshold, max_images
        self.results: list[dict[str, Any]] = []
        self.order: list[str] = []  # the file names of the split, in order
        self.drawn = 0
        self.names = OutputNames()

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.order = split_file_names(trainer)
        self.results, self.drawn, self.names = [], 0, OutputNames(file_names=self.order)
        (self.output_dir / "images").mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        class_names: Sequence[str] = getattr(datamodule, "class_names", [])
        category_ids: Sequence[int] | None = getattr(datamodule, "category_ids", None)
        images, targets = batch
        for image, target, pred in zip(images, targets, prediction, strict=True):
            labels = pred["labels"].tolist()
            ids = [category_ids[i] for i in labels] if category_ids else [i + 1 for i in labels]
            xywh = box_convert(pred["boxes"], "xyxy", "xywh").round(decimals=2).tolist()
            scores = pred["scores"].round(decimals=4).tolist()
            file_name = target["file_name"]
            self.results += [
                {"image_id": target["image_id"], "file_name": file_name, "category_id": c, "bbox": b, "score": s}
                for c, b, s in zip(ids, xywh, scores, strict=True)
            ]
            place, name = self.names.place(file_name)
            if self.max_images is None or (self.drawn if place is None else place) < self.max_images:
                picture = draw_detections(image, pred, class_names, self.score_threshold)
                save_png(Image.fromarray(picture.permute(1, 2, 0).numpy()), self.output_dir / "images" / name)
                self.drawn += 1

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.results = gather_in_order(self.results, self.order)
        self.drawn = total(self.drawn)
        if not getattr(trainer, "is_global_zero", True):
            return
        path = self.output_dir / "predictions.json"
        write_json_atomic(path, self.results)
        log.info(
            "%d detections written to %s, %d pictures to %s",
            len(self.results),
            path,
            self.drawn,
            self.output_dir / "images",
        )
