"""Fine-grained classification and multi-label attributes as Lightning tasks, with optional distillation
from a teacher (MobileNetV1 paper sections 4.3 and 4.5)."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from ..data.io import tensor_to_pixels
from .base import BaseTask, Evaluator, Schedule
from .distill import binary_soft_loss, load_teacher, softmax_soft_loss
from .pictures import side_by_side, text_panel, to_side
from .safety import NonFinitePolicy
from .writers.classification import caption_cell

log = logging.getLogger(__name__)
Batch = tuple[Tensor, dict[str, Any]]
ATTRIBUTE_SIDE = 160  # pixels: an attribute picture's image; its text beside it, twice as wide, at most 3x as high


class ClassificationTask(BaseTask):
    """Train and evaluate a classifier from ``create_model`` (``mobilenet_v1`` by default).

    The loss is ``alpha * hard + (1 - alpha) * soft``: ``hard`` the cross-entropy with the labels (with
    ``label_smoothing``), ``soft`` the distillation loss against ``teacher`` at ``temperature`` (without a
    teacher: ``hard`` alone). The data module's evaluator gives ``val/top1`` (monitored) and ``val/top5``.
    Images arrive in [0, 1], as the model and the teacher take them (every ``create_model`` model normalizes
    inside; ``model_kwargs: {image_mean: [...], image_std: [...]}`` sets other statistics).

    Args:
        model: a registered classifier (``mobilenet_v1``, ``mobilenet_v2``, ``classifier``, ``timm/...``).
        num_classes: outputs; LightningCLI links it from the data module.
        image_size: the training resolution (the paper's resolution multiplier), linked from the data module.
        model_kwargs: the builder's other arguments, e.g. ``{"width_mult": 0.75}`` or, for ``classifier``,
            ``{"backbone": "mobilenet_v2", "dropout": 0.2}``.
        pretrained: weights of the whole model (a file; a class head of another size stays fresh, so
            ImageNet weights fine-tune to any number of classes).
        pretrained_backbone: ImageNet weights of the backbone (``classifier`` and ``attribute_classifier``).
        label_smoothing: of the hard cross-entropy.
        teacher: distill from this teacher: a mobiletasks ``.ckpt`` or a ``create_model`` name (see
            :mod:`mobiletasks.tasks.distill`); used in training only.
        teacher_weights, teacher_kwargs: the weights file and builder arguments of a named teacher.
        teacher_image_size: resize the images to this side for the teacher (None: as the student sees them).
        alpha: the weight of the hard loss when a teacher is set; 0 trains from the teacher alone, without labels.
        temperature: the distillation temperature T.
        optimizer, schedule, warmup_steps, norm_weight_decay, skip_unreadable, nonfinite_loss: see ``BaseTask``.
        depthwise_weight_decay: weight decay of depthwise convolution filters (V1 paper section 3.2: "very little
            or no weight decay"); None: the optimizer's.
        log_val_images: validation images logged each time validation runs (TensorBoard), each with the
            predicted class and its probability, and the true class (green where right, red where wrong); 0 logs
            none.
    """

    kind = "classification"
    monitor = "val/top1"
    mode = "max"
    multi_label = False
    prediction_writer = "mobiletasks.tasks.ClassificationWriter"

    def __init__(
        self,
        model: str = "mobilenet_v1",
        num_classes: int = 1000,
        image_size: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pretrained_backbone: str | None = None,
        label_smoothing: float = 0.0,
        teacher: str | None = None,
        teacher_weights: str | None = None,
        teacher_kwargs: dict[str, Any] | None = None,
        teacher_image_size: int | None = None,
        alpha: float = 0.5,
        temperature: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule = "cosine",
        warmup_steps: int = 0,
        norm_weight_decay: float | None = 0.0,
        depthwise_weight_decay: float | None = 0.0,
        log_val_images: int = 8,
        skip_unreadable: bool = False,
        nonfinite_loss: NonFinitePolicy = "stop",
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha weighs the hard-label loss and must lie in [0, 1], got {alpha}")
        if teacher is None and alpha == 0.0:
            raise ValueError("alpha=0 trains from the teacher alone: set teacher (a .ckpt or a model name)")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        super().__init__(optimizer, schedule, warmup_steps, norm_weight_decay)
        self.teacher: nn.Module | None = None  # set up for fit; kept out of the state dict and the checkpoints

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "teacher":  # not a submodule: its weights stay out of the student's checkpoints
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit" and hp["teacher"] is not None and self.teacher is None:
            size = hp["teacher_image_size"] or hp["image_size"] or 224
            self.teacher = load_teacher(
                hp["teacher"], hp["teacher_weights"], hp["teacher_kwargs"], hp["num_classes"], size
            )
            log.info("distilling from %s (alpha=%s, T=%s)", hp["teacher"], hp["alpha"], hp["temperature"])

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of RGB float images ``[B, 3, H, W]`` in [0, 1]."""
        logits: Tensor = self.net(images)
        return logits

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=1)

    def hard_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams["label_smoothing"])

    def soft_loss(self, logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return softmax_soft_loss(logits, teacher_logits, self.hparams["temperature"])

    def teacher_logits(self, images: Tensor) -> Tensor:
        assert self.teacher is not None
        teacher = self.teacher.to(images.device)
        size = self.hparams["teacher_image_size"]
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            logits: Tensor = teacher(images)  # in [0, 1] too: the teacher normalizes inside
        return logits.float()

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch
        logits = self(images)
        alpha = self.hparams["alpha"] if self.teacher is not None else 1.0
        losses: dict[str, Tensor] = {}
        if alpha > 0:
            if "labels" not in targets:
                raise ValueError(
                    "the training data has no labels: give labelled data, or distill from a teacher with alpha=0"
                )
            losses["hard_loss"] = self.hard_loss(logits, targets["labels"])
        if self.teacher is not None and alpha < 1:
            losses["soft_loss"] = self.soft_loss(logits, self.teacher_logits(images))
        loss = alpha * losses.get("hard_loss", 0.0) + (1 - alpha) * losses.get("soft_loss", 0.0)
        assert isinstance(loss, Tensor)
        return loss, losses

    def evaluate_batch(self, evaluator: Evaluator, batch: Batch) -> Tensor | None:
        images, targets = batch
        if not len(images):
            return None
        if "labels" not in targets:
            raise ValueError("the evaluation split has no labels; validate and test need labelled data")
        logits = self(images)
        evaluator.update(logits, targets["labels"])
        return logits

    def draw_pictures(self, batch: Batch, preds: Tensor, count: int) -> list[Tensor]:
        """Per image: the predicted class and its probability, and the true class in green (right) or red."""
        name = self._class_names()
        scores, predicted = self.probabilities(preds[:count]).max(dim=1)
        truths = batch[1]["labels"][:count].tolist()
        pictures = []
        for image, p, score, truth in zip(batch[0], predicted.tolist(), scores.tolist(), truths, strict=False):
            color = "green" if p == truth else "red"
            pictures.append(caption_cell(image, name(p), f"{score:.2f}", f"true: {name(truth)}", color))
        return pictures

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, _ = batch
        if not len(images):
            return torch.zeros(0, self.hparams["num_classes"], device=self.device)
        return self.probabilities(self(images))


class AttributeTask(ClassificationTask):
    """Multi-label attributes (``attribute_classifier``, or ``mobilenet_v1`` with one output per attribute).

    As :class:`ClassificationTask`, except: the hard loss is the binary cross-entropy per attribute (with
    ``pos_weight``), the soft loss the binary KL divergence to the teacher's sigmoid probabilities, and the
    evaluator gives ``val/map`` (mean AP over attributes, monitored), ``val/accuracy`` and per-attribute
    ``val/ap/<name>`` and ``val/acc/<name>``. ``alpha=0`` is the paper's setting: the teacher alone.

    Args:
        num_classes: the number of attributes (linked from the data module).
        pos_weight: weight of the positive term per attribute: one number, one per attribute, "balanced"
            (negatives / positives of each attribute in the training split) or None.
        kwargs: the other arguments of :class:`ClassificationTask`, by name (``label_smoothing`` does not apply).

    Raises:
        ValueError: ``label_smoothing`` is not 0; ``pos_weight`` is not positive, or has neither one nor
            ``num_classes`` numbers.
    """

    kind = "attributes"
    monitor = "val/map"
    multi_label = True

    def __init__(
        self,
        model: str = "mobilenet_v1",
        num_classes: int = 40,
        pos_weight: float | list[float] | Literal["balanced"] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("label_smoothing", 0.0) != 0.0:
            raise ValueError("label_smoothing does not apply to attributes (a binary loss per attribute); remove it")
        super().__init__(model, num_classes, **kwargs)
        self.pos_weight: Tensor | None = None
        if isinstance(pos_weight, int | float | list):
            weights = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
            weights = weights.expand(num_classes) if weights.numel() == 1 else weights
            if weights.numel() != num_classes or bool((weights <= 0).any()):
                raise ValueError(f"pos_weight must be positive, one number or {num_classes}, got {pos_weight}")
            self.pos_weight = weights.clone()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams["pos_weight"] == "balanced" and self.pos_weight is None:
            targets = getattr(self.trainer.datamodule.dataset("train"), "targets", None)  # type: ignore[attr-defined]
            if targets is None:
                raise ValueError('pos_weight="balanced" needs labelled training data with a `targets` array')
            positives = torch.as_tensor(targets, dtype=torch.float32).sum(0)
            self.pos_weight = (len(targets) - positives) / positives.clamp(min=1)
            log.info("pos_weight per attribute: %s", [round(w, 2) for w in self.pos_weight.tolist()])

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def hard_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)

    def soft_loss(self, logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return binary_soft_loss(logits, teacher_logits, self.hparams["temperature"])

    def draw_pictures(self, batch: Batch, preds: Tensor, count: int) -> list[Tensor]:
        """Per image: the image, the attributes predicted present (in red those absent in truth), and those
        predicted absent but present in truth (red); "all right" (green) where every attribute is."""
        name = self._class_names()
        present = self.probabilities(preds[:count]) > 0.5  # AttributeEvaluator's threshold
        truth = batch[1]["labels"][:count].bool()
        pictures = []
        for image, shown, true in zip(batch[0], present, truth, strict=False):
            small, _ = to_side(image, ATTRIBUTE_SIDE)
            pixels = tensor_to_pixels(small)
            lines = [("predicted present:", "black")]
            lines += [(f"  {name(c)}", "black" if true[c] else "red") for c in shown.nonzero()[:, 0].tolist()]
            missed = (true & ~shown).nonzero()[:, 0].tolist()
            lines += [("missed:", "red"), *((f"  {name(c)}", "red") for c in missed)] if missed else []
            if bool((shown == true).all()):
                lines.append((f"all {len(true)} right", "green"))
            pictures.append(side_by_side([pixels, text_panel(lines, 2 * ATTRIBUTE_SIDE, 3 * ATTRIBUTE_SIDE)]))
        return pictures
