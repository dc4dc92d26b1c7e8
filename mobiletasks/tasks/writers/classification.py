"""``mobiletasks predict`` for classification: the top-k classes (or the attributes) of every image as JSON, and
a contact sheet of the first images with their prediction written under each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from ...data.io import save_png, tensor_to_pixels
from .base import gather_in_order, split_file_names, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["ClassificationWriter", "caption_cell", "caption_font", "fit_text"]

THUMBNAIL = 128  # every image is resized to THUMBNAIL x THUMBNAIL pixels on the contact sheet
PADDING = 2  # pixels between the cells of the sheet (make_grid's padding, white)


@cache
def caption_font() -> Any:
    return ImageFont.load_default(size=12)  # Aileron through FreeType; a bitmap font without it


def fit_text(text: str, width: int, draw: ImageDraw.ImageDraw, font: Any) -> str:
    """``text``, cut and ended with "..." where it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def caption_cell(image: Tensor, caption: str, score: str = "", note: str = "", note_color: str = "black") -> Tensor:
    """``image`` (float [0, 1], 3 x H x W) resized to ``THUMBNAIL`` pixels square, with ``caption`` (cut to
    fit, but ``score`` always shown after it) on a white strip below, and ``note`` (cut to fit, in
    ``note_color``) on a second strip where given: uint8 [3, THUMBNAIL + strips, THUMBNAIL].

    Example:
        >>> cell = caption_cell(torch.rand(3, 40, 30), "a very long class name indeed", "0.93")
        >>> cell.shape[0], cell.shape[2], cell.dtype
        (3, 128, torch.uint8)
        >>> caption_cell(torch.rand(3, 40, 30), "cat", note="true: dog", note_color="red").shape[1] > cell.shape[1]
        True
    """
    thumb = F.interpolate(image[None].float().cpu(), (THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True)
    pixels = tensor_to_pixels(thumb[0]).permute(1, 2, 0).contiguous().numpy()
    font = caption_font()
    strip = int(font.getbbox("Ag")[3]) + 4  # the text's height and a margin
    cell = Image.new("RGB", (THUMBNAIL, THUMBNAIL + strip * (2 if note else 1)), "white")
    cell.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(cell)
    suffix = f" {score}" if score else ""
    text = fit_text(caption, THUMBNAIL - 4 - int(draw.textlength(suffix, font=font)), draw, font) + suffix
    draw.text((2, THUMBNAIL + 2), text, fill="black", font=font)
    if note:
        draw.text((2, THUMBNAIL + strip + 2), fit_text(note, THUMBNAIL - 4, draw, font), fill=note_color, font=font)
    return torch.from_numpy(np.asarray(cell).copy()).permute(2, 0, 1)


class ClassificationWriter(BasePredictionWriter):
    """Writes ``predictions.json`` and ``contact_sheet.png`` under ``output_dir``.

    The task's ``predict_step`` returns probabilities [B, K] (softmax for single-label, sigmoid for
    attributes), and its bool ``multi_label`` says which; the names come from ``trainer.datamodule.class_names``
    (a class without a name is called by its index). ``predictions.json`` is a list, one entry per image:

    - single-label: ``{"file_name", "top_k": [{"label": int, "name": str, "score": float}, ...]}``, best first;
    - multi-label: ``{"file_name", "probabilities": {name: p, ...}, "positive": [names with p >= threshold]}``.

    ``contact_sheet.png`` shows the first ``max_images`` images in rows of ``columns``, each ``THUMBNAIL``
    pixels square with its prediction under it: the top-1 class and its score (``"cat 0.93"``), or the positive
    attributes (cut to fit).

    Args:
        output_dir: where to write; relative paths are relative to the working directory.
        top_k: classes per image in the JSON (single-label); at most the number of classes.
        threshold: the probability from which an attribute counts as present (multi-label).
        max_images: images on the contact sheet (0: no sheet).
        columns: images per row of the contact sheet.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        top_k: int = 5,
        threshold: float = 0.5,
        max_images: int = 64,
        columns: int = 8,
    ):
        super().__init__(write_interval="batch")
        if top_k < 1 or columns < 1 or max_images < 0:
            raise ValueError(
                f"top_k is {top_k}, columns {columns}, max_images {max_images}; top_k and columns must be at least "
                "1 and max_images at least 0, e.g. top_k=5, columns=8, max_images=64"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is {threshold}; it applies to probabilities, so pass a value in [0, 1]")
        self.output_dir, self.top_k, self.threshold = Path(output_dir), top_k, threshold
        self.max_images, self.columns = max_images, columns
        self.results: list[dict[str, Any]] = []
        self.cells: list[tuple[str, Tensor]] = []  # (file name, picture) of the first images
        self.order: list[str] = []  # the file names of the split, in order

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.results, self.cells, self.order = [], [], split_file_names(trainer)

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
        file_names: list[str] = list(targets["file_name"])
        if not isinstance(prediction, Tensor) or prediction.ndim != 2 or len(prediction) != len(file_names):
            shape = tuple(prediction.shape) if isinstance(prediction, Tensor) else type(prediction).__name__
            raise ValueError(
                f"the prediction of batch {batch_idx} is {shape} for {len(file_names)} images; predict_step must "
                "return probabilities [B, num_classes]"
            )
        class_names: Sequence[str] = getattr(getattr(trainer, "datamodule", None), "class_names", None) or []
        num_classes = prediction.shape[1]
        names = [str(class_names[i]) if i < len(class_names) else str(i) for i in range(num_classes)]
        probabilities = prediction.detach().to("cpu", torch.float32)
        multi_label = bool(getattr(pl_module, "multi_label", False))
        for image, file_name, p in zip(images, file_names, probabilities, strict=True):
            if multi_label:
                positive = [n for n, v in zip(names, p.tolist(), strict=True) if v >= self.threshold]
                probs = {n: round(v, 4) for n, v in zip(names, p.tolist(), strict=True)}
                self.results.append({"file_name": file_name, "probabilities": probs, "positive": positive})
                caption, score = ", ".join(positive) or "-", ""
            else:
                scores, labels = p.topk(min(self.top_k, num_classes))
                top = [
                    {"label": c, "name": names[c], "score": round(s, 4)}
                    for c, s in zip(labels.tolist(), scores.tolist(), strict=True)
                ]
                self.results.append({"file_name": file_name, "top_k": top})
                caption, score = top[0]["name"], f"{top[0]['score']:.2f}"
            if len(self.cells) < self.max_images:
                self.cells.append((file_name, caption_cell(image, caption, score)))

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.results = gather_in_order(self.results, self.order)
        cells = gather_in_order(self.cells, self.order, file_name=lambda cell: cell[0])
        if not getattr(trainer, "is_global_zero", True):
            return
        path = self.output_dir / "predictions.json"
        write_json_atomic(path, self.results)
        log.info("predictions for %d images written to %s", len(self.results), path)
        if cells:
            images = [cell for _, cell in cells[: self.max_images]]
            grid = make_grid(torch.stack(images), nrow=self.columns, padding=PADDING, pad_value=255)
            sheet = self.output_dir / "contact_sheet.png"
            save_png(Image.fromarray(grid.permute(1, 2, 0).contiguous().numpy()), sheet)
            log.info("contact sheet of %d images written to %s", len(images), sheet)
