"""``mobiletasks predict`` for segmentation: index-mask PNGs in the VOC palette, and overlay pictures."""

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
from torchvision.utils import draw_segmentation_masks

from ...data.io import save_png, tensor_to_pixels, voc_palette, write_index_png
from ...evaluation.distributed import total
from .base import OutputNames, gather_in_order, split_file_names, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["SegmentationWriter", "draw_segmentation"]


def draw_segmentation(image: Tensor, labels: Tensor, alpha: float = 0.5) -> Tensor:
    """``image`` (float [0, 1], 3 x H x W) as uint8 with each predicted class but background (0) painted over it
    in its VOC color; ``labels`` is the [H, W] class map."""
    pixels = tensor_to_pixels(image)
    labels = labels.detach().cpu()
    classes = [c for c in labels.unique().tolist() if c != 0]
    if not classes:
        return pixels
    palette = voc_palette()
    colors = [tuple(palette[3 * c : 3 * c + 3]) for c in classes]
    masks = labels[None] == torch.tensor(classes)[:, None, None]
    return draw_segmentation_masks(pixels, masks, alpha=alpha, colors=colors)


class SegmentationWriter(BasePredictionWriter):
    """Writes, per image, ``masks/<file name>.png``: the predicted class indices as a palette PNG (VOC colors,
    the format of VOC's ``SegmentationClass``), and for the first ``max_images`` images
    ``overlays/<file name>.png``: the picture with each predicted class but background painted over it. The
    file name is the image's path relative to its folder (one output per input, see
    :class:`~mobiletasks.tasks.writers.base.OutputNames`). ``predictions.json`` lists per image its ``file_name``,
    ``mask``, ``overlay`` (paths relative to ``output_dir``, or null) and the predicted ``classes``.

    Predictions are cropped to the image's own size (the target's ``size``), undoing the batch's padding. Under
    several processes each writes the masks of its images and the first writes ``predictions.json`` of all.

    Args:
        output_dir: where to write; relative paths are relative to the working directory.
        max_images: overlays to draw (None: all); every image gets its mask.
        alpha: the opacity of the painted classes in the overlays.
    """

    def __init__(self, output_dir: str = "predictions", max_images: int | None = 32, alpha: float = 0.5):
        super().__init__(write_interval="batch")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha is {alpha}; the overlay opacity must be in [0, 1], e.g. 0.5")
        self.output_dir, self.max_images, self.alpha = Path(output_dir), max_images, alpha
        self.written = 0
        self.drawn = 0
        self.names = OutputNames()
        self.records: list[dict[str, Any]] = []
        self.order: list[str] = []  # the file names of the split, in order

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.order = split_file_names(trainer)
        self.written, self.drawn, self.names, self.records = 0, 0, OutputNames(file_names=self.order), []

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
        images, targets = batch
        class_names: Sequence[str] = getattr(getattr(trainer, "datamodule", None), "class_names", None) or []
        for image, target, labels in zip(images, targets, prediction, strict=True):
            h, w = (int(v) for v in target.get("size", labels.shape[-2:]))
            labels = labels[:h, :w]
            place, name = self.names.place(target["file_name"])
            write_index_png(labels, self.output_dir / "masks" / name)
            self.written += 1
            overlay = None
            if self.max_images is None or (self.drawn if place is None else place) < self.max_images:
                picture = draw_segmentation(image[:, :h, :w], labels, self.alpha)
                rgb = Image.fromarray(picture.permute(1, 2, 0).contiguous().numpy())
                overlay = f"overlays/{name}"
                save_png(rgb, self.output_dir / overlay)
                self.drawn += 1
            classes = [class_names[c] if c < len(class_names) else str(c) for c in labels.unique().tolist()]
            record = {"file_name": target["file_name"], "mask": f"masks/{name}", "overlay": overlay}
            self.records.append({**record, "classes": classes})

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.records = gather_in_order(self.records, self.order)
        self.written, self.drawn = total(self.written), total(self.drawn)
        if not getattr(trainer, "is_global_zero", True):
            return
        write_json_atomic(self.output_dir / "predictions.json", self.records)
        log.info(
            "%d masks written to %s, %d overlays to %s",
            self.written,
            self.output_dir / "masks",
            self.drawn,
            self.output_dir / "overlays",
        )
