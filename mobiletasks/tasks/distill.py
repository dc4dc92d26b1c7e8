"""Knowledge distillation (Hinton et al. 2015; MobileNetV1 paper section 4.5): a frozen teacher and the soft
losses that pull a student's outputs toward it.

A teacher is a mobiletasks checkpoint (``.ckpt`` of a classification or attribute run: the model is rebuilt
from its hyperparameters) or any classifier ``create_model`` builds (``mobilenet_v2``, ``classifier``,
``torchvision/resnet50``, ``timm/efficientnet_b0``, ...) with a weights file. It must give one output per
class (attribute) of the student. Teachers take the same images as the student, RGB in [0, 1]: every model
normalizes inside with its own ``image_mean`` / ``image_std``, so a timm teacher trained with other statistics
gets its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import PathLike
from ..factory import create_model
from ..optimize import fuse_bn_

__all__ = ["binary_soft_loss", "load_teacher", "softmax_soft_loss"]


def load_teacher(
    teacher: str,
    weights: PathLike | None = None,
    kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    image_size: int = 64,
) -> nn.Module:
    """A frozen teacher in eval mode, its BatchNorm folded into the convolutions (it only ever evaluates).

    Args:
        teacher: a ``.ckpt`` file of a mobiletasks classification or attribute run, or a model name for
            ``create_model``.
        weights: the weights file of a named teacher (a teacher without trained weights teaches nothing).
        kwargs: ``create_model`` arguments of a named teacher (``num_classes`` is the student's).

    Raises:
        ValueError: ``weights`` or ``kwargs`` given with a checkpoint (they would not be used), a named teacher
            without weights, or a teacher that does not give ``[B, num_classes]`` logits.
        num_classes: the student's outputs; the teacher must give as many (checked on one ``image_size`` image).
        image_size: the side of the images the teacher will see.
    """
    path = Path(teacher)
    if path.suffix == ".ckpt" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"teacher checkpoint {path} does not exist; pass the .ckpt of a trained run")
        if weights is not None or kwargs:
            raise ValueError(
                f"teacher {path} is a checkpoint: it is rebuilt from its own hyperparameters and weights, so "
                f"teacher_weights ({weights}) and teacher_kwargs ({kwargs}) would not be used; leave them out, or "
                "name the teacher's model instead of its checkpoint"
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hp = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        if "model" not in hp or "num_classes" not in hp:
            raise ValueError(
                f"teacher checkpoint {path} names no model and num_classes in its hyper_parameters: it is not the "
                "checkpoint of a mobiletasks ClassificationTask or AttributeTask run"
            )
        kwargs = {**(hp.get("model_kwargs") or {}), "num_classes": hp["num_classes"]}
        model = create_model(hp["model"], pretrained=path, **kwargs)
    else:
        if weights is None:
            raise ValueError(
                f"teacher {teacher!r} has no weights: set teacher_weights to its trained weights file, or pass the "
                ".ckpt of a mobiletasks run as teacher"
            )
        args = {**(kwargs or {})}
        if num_classes is not None:
            args.setdefault("num_classes", num_classes)
        model = create_model(teacher, pretrained=weights, **args)
    model = fuse_bn_(model.eval()).requires_grad_(False)
    if num_classes is not None:
        with torch.no_grad():
            logits = model(torch.zeros(1, 3, image_size, image_size))
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError(
                f"teacher {teacher} does not return class logits [batch, classes] but {type(logits).__name__}: "
                "a teacher must be a classifier"
            )
        outputs = logits.shape[-1]
        if outputs != num_classes:
            raise ValueError(
                f"teacher {teacher} gives {outputs} outputs but the student has num_classes={num_classes}: the teacher "
                "must be trained on the same classes (attributes), in the same order"
            )
    return model


def softmax_soft_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL divergence between the teacher's and the student's softened class distributions, times ``T**2``
    (Hinton et al.: keeps the gradients' scale independent of ``T``). Zero when the logits agree."""
    t = temperature
    log_student = F.log_softmax(student / t, dim=1)
    log_teacher = F.log_softmax(teacher / t, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * t * t


def binary_soft_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Per-attribute binary KL divergence between the teacher's and the student's softened sigmoid
    probabilities, averaged, times ``T**2``: cross-entropy against the teacher's probabilities minus their
    entropy, so it is zero when the logits agree (same gradients as the plain cross-entropy)."""
    t = temperature
    target = torch.sigmoid(teacher / t)
    cross = F.binary_cross_entropy_with_logits(student / t, target)
    entropy = F.binary_cross_entropy_with_logits(teacher / t, target)
    return (cross - entropy) * t * t
