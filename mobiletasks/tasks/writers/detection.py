"""The detection prediction writer: COCO results JSON and pictures with the boxes drawn."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes

from ...data.io import save_png, tensor_to_pixels
from ...evaluation.distributed import total
from .base import OutputNames, gather_in_order, split_file_names, write_json_atomic

log = logging.getLogger(__name__)


def draw_detections(
    image: Tensor, prediction: dict[str, Tensor], class_names: Sequence[str], score_threshold: float = 0.0
) -> Tensor:
    """``image`` (float [0, 1], 3 x H x W) as uint8 with the boxes (xyxy pixels) scoring at least
    ``score_threshold`` drawn and named, each with its score; without ``scores`` (ground truth) every box, named."""
    scores = prediction.get("scores")
    keep = scores >= score_threshold if scores is not None else slice(None)
    boxes, labels = prediction["boxes"][keep], prediction["labels"][keep]
    names = [class_names[i] if i < len(class_names) else str(i) for i in labels.tolist()]
    if scores is not None:
        names = [f"{name} {s:.2f}" for name, s in zip(names, scores[keep].tolist(), strict=True)]
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
    pixels = tensor_to_pixels(image)
    if not len(boxes):
        return pixels
    return draw_bounding_boxes(
        pixels, boxes.cpu(), labels=names, colors=colors, width=2, label_colors="black", fill_labels=True
    )


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
