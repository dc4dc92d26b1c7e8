"""Object detection as a Lightning task: SSD / SSDLite models scored by the data module's official metric."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from .base import BaseTask, Evaluator, Schedule
from .pictures import side_by_side, to_side
from .safety import NonFinitePolicy
from .writers.detection import draw_detections

log = logging.getLogger(__name__)
Batch = tuple[list[Tensor], list[dict[str, Any]]]
PICTURE_SCORE = 0.3  # the detections drawn in the validation pictures score at least this


class DetectionTask(BaseTask):
    """Train and evaluate a detector from ``create_model`` (``ssdlite_mobilenet_v2`` by default).

    The data module provides the metric: ``datamodule.evaluator("val")`` (COCO mAP through pycocotools, or
    VOC mAP), logged as ``val/map``, ``val/map_50``, ... and monitored for the best checkpoint.

    Args:
        model: a registered detector (``ssdlite_mobilenet_v2``, ``ssdlite_mobilenet_v1``,
            ``ssd300_mobilenet_v1``, ``ssdlite``, ``ssd``).
        num_classes: object classes without background; LightningCLI links it from the data module.
        image_size: the square side the model resizes images to (None: the model's own, e.g. 320);
            LightningCLI links it from the data module's training ``image_size``.
        model_kwargs: the builder's other arguments, e.g. ``{"width_mult": 0.75}`` or, for ``ssdlite``,
            ``{"backbone": "mobilenet_v1", "backbone_kwargs": {...}}``.
        pretrained: weights of the whole detector (a file; loaded with ``weights_only=True``).
        pretrained_backbone: ImageNet weights of the backbone (a file).
        loss: ``hard_negative`` (SSD's 3:1 mining) or ``focal``.
        score_thresh, nms_thresh, topk_candidates, detections_per_img: post-processing (per-class NMS).
        log_val_images: validation images logged each time validation runs (TensorBoard), the ground truth
            beside the detections scoring at least ``PICTURE_SCORE``; 0 logs none.
        optimizer, schedule, warmup_steps, norm_weight_decay, skip_unreadable, nonfinite_loss: see ``BaseTask``.
    """

    kind = "detection"
    monitor = "val/map"
    mode = "max"
    prediction_writer = "mobiletasks.tasks.DetectionWriter"

    def __init__(
        self,
        model: str = "ssdlite_mobilenet_v2",
        num_classes: int = 80,
        image_size: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pretrained_backbone: str | None = None,
        loss: Literal["hard_negative", "focal"] = "hard_negative",
        score_thresh: float = 0.001,
        nms_thresh: float = 0.6,
        topk_candidates: int = 100,
        detections_per_img: int = 100,
        log_val_images: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule = "cosine",
        warmup_steps: int = 0,
        norm_weight_decay: float | None = 0.0,
        skip_unreadable: bool = False,
        nonfinite_loss: NonFinitePolicy = "stop",
    ) -> None:
        super().__init__(optimizer, schedule, warmup_steps, norm_weight_decay)

    def model_options(self) -> dict[str, Any]:
        hp = self.hparams
        options = {k: hp[k] for k in ("loss", "score_thresh", "nms_thresh", "topk_candidates", "detections_per_img")}
        if hp["image_size"] is not None:
            options["size"] = hp["image_size"]
        return options

    def forward(self, images: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        return self.net(images)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch
        losses: dict[str, Tensor] = self.model(images, targets)
        loss = sum(losses.values())
        assert isinstance(loss, Tensor)
        return loss, losses

    def evaluate_batch(self, evaluator: Evaluator, batch: Batch) -> list[dict[str, Tensor]] | None:
        images, targets = batch
        if not images:
            return None
        preds = self.net(images)
        evaluator.update(preds, targets)
        return preds

    def draw_pictures(self, batch: Batch, preds: list[dict[str, Tensor]], count: int) -> list[Tensor]:
        """Per image: the ground-truth boxes beside the detections scoring at least ``PICTURE_SCORE``."""
        names = self._class_names().names
        pictures = []
        for image, pred, target in zip(batch[0][:count], preds, batch[1], strict=False):
            small, scale = to_side(image)
            truth = {"boxes": target["boxes"] * scale, "labels": target["labels"]}
            found = {**pred, "boxes": pred["boxes"] * scale}
            panels = [draw_detections(small, truth, names), draw_detections(small, found, names, PICTURE_SCORE)]
            pictures.append(side_by_side(panels, ["ground truth", f"detections scoring {PICTURE_SCORE} or more"]))
        return pictures

    def on_evaluated(self, split: str, evaluator: Evaluator) -> None:
        """Write the split's detections as ``<split>_results.json`` into the run's log folder (none without a logger:
        Lightning's log folder would then be the working directory)."""
        write = getattr(evaluator, "write_results", None)
        trainer = self.trainer
        if write is None or trainer.sanity_checking or not self.loggers:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every process asks
        if log_dir is not None and trainer.is_global_zero:
            path = Path(log_dir) / f"{split}_results.json"
            write(path)
            log.info("%s detections written to %s", split, path)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Tensor]]:
        images, _ = batch
        return self.net(images) if images else []
