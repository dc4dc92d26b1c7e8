"""Pictures for the loggers: validation images drawn with the predictions beside the ground truth, and the
evaluation figures (PR curves, confusion matrices, attribute APs) after each evaluation.

A task draws the first ``log_val_images`` images of the validation split (those the first process scores: the same
images every time) each time validation runs, with the tasks' own drawing (``draw_pictures``), and
:func:`log_images` hands them to every logger that takes images: TensorBoard (``add_image``) and loggers with
Lightning's ``log_image(key, images, step)`` (Weights & Biases). A CSV logger takes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.fabric.loggers import Logger as FabricLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from PIL import Image, ImageDraw
from torch import Tensor

from .writers.classification import caption_font, fit_text

__all__ = ["PICTURE_SIDE", "ClassNames", "log_images", "png_tensor", "side_by_side", "text_panel", "titled", "to_side"]

PICTURE_SIDE = 320  # pixels: the longer side of each panel of a validation picture
_GAP = 4  # white pixels between the panels


@dataclass(frozen=True)
class ClassNames:
    """The name of each class index; ``names(c)`` is ``str(c)`` for an index without a name."""

    names: list[str]

    def __call__(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)


def to_side(image: Tensor, side: int = PICTURE_SIDE) -> tuple[Tensor, float]:
    """``image`` [C, H, W] (float) resized (bilinear, antialiased) so that its longer side is ``side`` pixels,
    and the scale applied; boxes in pixels scale by the same factor. Small images are enlarged, so that the
    names drawn on them stay legible."""
    scale = side / max(image.shape[-2:])
    if scale == 1.0:
        return image, 1.0
    size = [max(1, round(n * scale)) for n in image.shape[-2:]]
    return F.interpolate(image[None].float(), size, mode="bilinear", antialias=scale < 1)[0], scale


def side_by_side(panels: Sequence[Tensor], titles: Sequence[str] | None = None) -> Tensor:
    """uint8 panels [3, H_i, W_i] in one row, top-aligned on white, ``_GAP`` pixels apart, each under its title
    where ``titles`` are given: uint8 [3, H, W]."""
    if titles is not None:
        panels = [titled(panel, title) for panel, title in zip(panels, titles, strict=True)]
    height = max(p.shape[1] for p in panels)
    width = sum(p.shape[2] for p in panels) + _GAP * (len(panels) - 1)
    row = torch.full((3, height, width), 255, dtype=torch.uint8)
    x = 0
    for panel in panels:
        row[:, : panel.shape[1], x : x + panel.shape[2]] = panel.cpu()
        x += panel.shape[2] + _GAP
    return row


def titled(panel: Tensor, title: str) -> Tensor:
    """A uint8 panel [3, H, W] under a white strip with ``title`` (cut to fit): uint8 [3, H + strip, W]."""
    return torch.cat([text_panel([(title, "black")], panel.shape[2]), panel.cpu()], dim=1)


def text_panel(lines: Sequence[tuple[str, str]], width: int, height: int | None = None) -> Tensor:
    """Lines of text, each ``(text, colour)``, on white, ``width`` pixels wide (each line cut to fit) and as high as
    the lines need, at most ``height`` (lines beyond it are dropped, the last one saying how many): uint8 [3, H, W]."""
    font = caption_font()
    step = int(font.getbbox("Ag")[3]) + 4
    if height is not None and len(lines) * step > height:
        keep = max(0, height // step - 1)
        lines = [*lines[:keep], (f"... {len(lines) - keep} more", "black")]
    canvas = Image.new("RGB", (width, step * len(lines)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (text, colour) in enumerate(lines):
        draw.text((3, k * step + 2), fit_text(text, width - 6, draw, font), fill=colour, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def png_tensor(path: Path) -> Tensor:
    """The RGB pixels of a PNG file as uint8 [3, H, W]."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def log_images(
    loggers: Sequence[Logger | FabricLogger],
    tag: str,
    images: Sequence[Tensor],
    step: int,
    names: Sequence[str] | None = None,
) -> int:
    """Log uint8 pictures [3, H, W] at ``step``, each as ``<tag>/<name>`` (``names`` default: 0, 1, ...; one
    TensorBoard image series each); returns how many loggers took them (0 when none takes images, e.g. CSV only)."""
    digits = len(str(max(0, len(images) - 1)))  # 00, 01, ..., 10: TensorBoard sorts the tags as text
    names = [f"{k:0{digits}d}" for k in range(len(images))] if names is None else list(names)
    taken = 0
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, image in zip(names, images, strict=True):
                logger.experiment.add_image(f"{tag}/{name}", image, step, dataformats="CHW")
            taken += 1
        elif callable(getattr(logger, "log_image", None)):  # Lightning's WandbLogger, NeptuneLogger
            arrays = [image.permute(1, 2, 0).numpy() for image in images]
            logger.log_image(key=tag, images=arrays, step=step, caption=names)  # type: ignore[attr-defined]
            taken += 1
    return taken
