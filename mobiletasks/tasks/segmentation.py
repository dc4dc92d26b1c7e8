"""Semantic segmentation as a Lightning task: Mobile DeepLabV3 scored by mIoU over the whole split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from ..data.io import tensor_to_pixels
from .base import BaseTask, Evaluator, Schedule
from .pictures import side_by_side, to_side
from .safety import NonFinitePolicy
from .writers.segmentation import draw_segmentation

Batch = tuple[Tensor, list[dict[str, Any]]]
MF_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # DeepLab's multi-scale evaluation inputs


class SegmentationTask(BaseTask):
    """Train and evaluate a segmentation model from ``create_model`` (``deeplabv3_mobilenet_v2`` by default).

    The data module provides the metric: ``datamodule.evaluator("val")`` accumulates one confusion matrix
    over the split; ``val/miou``, ``val/pixel_acc`` and ``val/iou/<class>`` are logged and ``val/miou``
    picks the best checkpoint.

    Args:
        model: a registered segmentation model (``deeplabv3_mobilenet_v2``, ``deeplabv3_mobilenet_v1``,
            ``deeplabv3``).
        num_classes: classes including background; LightningCLI links it from the data module.
        image_size: the training crop size, linked from the data module (recorded; the model takes any size).
        model_kwargs: the builder's other arguments, e.g. ``{"output_stride": 8, "aspp": false}``.
        pretrained: weights of the whole model (a file; loaded with ``weights_only=True``).
        pretrained_backbone: ImageNet weights of the backbone (a file).
        ignore_index: mask value left out of the loss and the metrics (VOC's 255).
        multiscale: evaluate (validate/test) with the paper's MF: inputs at ``scales`` and flipped, averaged.
        scales, flip: the multi-scale setting.
        log_val_images: validation images logged each time validation runs (TensorBoard): the image, the
            ground truth and the prediction in the VOC colors (ignored pixels in VOC's cream); 0 logs none.
        optimizer, schedule, warmup_steps, norm_weight_decay, skip_unreadable, nonfinite_loss: see ``BaseTask``
            (DeepLab uses ``poly``).
    """

    kind = "segmentation"
    monitor = "val/miou"
    mode = "max"
    prediction_writer = "mobiletasks.tasks.SegmentationWriter"

    def __init__(
        self,
        model: str = "deeplabv3_mobilenet_v2",
        num_classes: int = 21,
        image_size: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pretrained_backbone: str | None = None,
        ignore_index: int = 255,
        multiscale: bool = False,
        scales: Sequence[float] = MF_SCALES,
        flip: bool = True,
        log_val_images: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule = "poly",
        warmup_steps: int = 0,
        norm_weight_decay: float | None = 0.0,
        skip_unreadable: bool = False,
        nonfinite_loss: NonFinitePolicy = "stop",
    ) -> None:
        super().__init__(optimizer, schedule, warmup_steps, norm_weight_decay)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, K, H, W]`` (probabilities with ``multiscale``) at the input's resolution."""
        if self.hparams["multiscale"]:
            from ..evaluation.segmentation import multiscale_logits

            return multiscale_logits(self.net, images, tuple(self.hparams["scales"]), self.hparams["flip"])
        out: Tensor = self.net(images)["out"]
        return out

    @staticmethod
    def _masks(targets: list[dict[str, Any]]) -> Tensor:
        return torch.stack([t["mask"] for t in targets])

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch
        return self.loss(self.model(images)["out"], self._masks(targets)), {}

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Cross-entropy averaged over the counted pixels (not ``ignore_index``); 0 when a batch has none, where
        PyTorch's mean would be NaN (0 / 0)."""
        ignore = self.hparams["ignore_index"]
        total = F.cross_entropy(logits, masks, ignore_index=ignore, reduction="sum")
        return total / (masks != ignore).sum().clamp(min=1)

    def evaluate_batch(self, evaluator: Evaluator, batch: Batch) -> Tensor | None:
        images, targets = batch
        if not len(images):
            return None
        logits = self(images)
        evaluator.update(logits, self._masks(targets))
        return logits

    def draw_pictures(self, batch: Batch, preds: Tensor, count: int) -> list[Tensor]:
        """Per image (its own size, without the batch's padding): the image, the ground truth, the prediction."""
        pictures = []
        for image, target, labels in zip(batch[0][:count], batch[1], preds.argmax(1), strict=False):
            h, w = (int(v) for v in target.get("size", labels.shape[-2:]))
            small, _ = to_side(image[:, :h, :w])
            size = small.shape[-2:]
            masks = torch.stack([target["mask"][:h, :w], labels[:h, :w]])[:, None].float()
            truth, found = F.interpolate(masks, size, mode="nearest")[:, 0].long()
            pixels = tensor_to_pixels(small)
            panels = [pixels, draw_segmentation(small, truth), draw_segmentation(small, found)]
            pictures.append(side_by_side(panels, ["image", "ground truth", "prediction"]))
        return pictures

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, _ = batch
        if not len(images):  # unreadable images only, or another process's share (data.samplers)
            return torch.zeros(0, 0, 0, dtype=torch.long, device=self.device)
        return self(images).argmax(1)
