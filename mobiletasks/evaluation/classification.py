"""Image classification metrics: top-k accuracy (ImageNet, fine-grained) and attribute mAP / accuracy (CelebA).

Both evaluators accumulate a whole split through torchmetrics and read the metrics at the end, so the result
does not depend on how the split was batched, nor on how many processes shared it (``compute()`` gathers every
process's states first, :mod:`mobiletasks.evaluation.distributed`). Inputs are checked here, with errors that
name the mismatch, and moved to the CPU (the states are small: counts, and for AP one score per image and attribute).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy, MultilabelAveragePrecision

from .distributed import gather_tensors, total

__all__ = ["AttributeEvaluator", "ClassificationEvaluator"]


def _is_integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _check_logits(logits: Tensor, num_classes: int, what: str) -> None:
    if logits.ndim != 2 or logits.shape[1] != num_classes or not logits.is_floating_point():
        raise ValueError(
            f"logits have shape {tuple(logits.shape)} and dtype {logits.dtype}; pass float [B, {num_classes}] "
            f"logits, one column per {what} (the model's num_classes and the data module's classes must agree)"
        )


class ClassificationEvaluator:
    """Top-k accuracy of single-label classification over a whole split: the share of images whose true class
    is among the k highest scores (ImageNet's top-1 / top-5).

    Args:
        num_classes: the classes (ImageNet: 1000); at least 2.
        top_k: the k to report, each as ``top<k>``; a k above ``num_classes`` is left out (it would be 1).

    ``update(logits, labels)`` takes logits (or probabilities) [B, K] and class indices [B]; an empty batch is
    fine. ``compute()`` returns ``{"top1": ..., "top5": ...}`` in float, 0.0 before any image was seen.

    Example:
        >>> evaluator = ClassificationEvaluator(3, top_k=(1, 2, 5))
        >>> evaluator.update(torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), torch.tensor([1, 2]))
        >>> evaluator.compute()  # the second image: class 2 is second best; k=5 > 3 classes is left out
        {'top1': 0.5, 'top2': 1.0}
    """

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5)):
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}; classification needs at least 2 classes")
        if any(k < 1 for k in top_k):
            raise ValueError(f"top_k is {tuple(top_k)}; each k must be at least 1, e.g. (1, 5)")
        self.num_classes = num_classes
        self.top_k = sorted({k for k in top_k if k <= num_classes})
        # the inputs are checked in update (cheaply), so torchmetrics' own checks are off
        self.metrics = {
            k: MulticlassAccuracy(
                num_classes, top_k=k, average="micro", validate_args=False, dist_sync_fn=gather_tensors
            )
            for k in self.top_k
        }
        self.seen = 0

    def reset(self) -> None:
        """Forget every image seen."""
        for metric in self.metrics.values():
            metric.reset()
        self.seen = 0

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch: ``logits`` [B, K] and ``labels`` [B], integer class indices in [0, K)."""
        _check_logits(logits, self.num_classes, "class")
        if labels.ndim != 1 or not _is_integer(labels) or len(labels) != len(logits):
            raise ValueError(
                f"labels have shape {tuple(labels.shape)} and dtype {labels.dtype} for logits of shape "
                f"{tuple(logits.shape)}; pass integer class indices [B] (for 0/1 attribute labels [B, K] use "
                "AttributeEvaluator)"
            )
        if not len(labels):
            return
        logits, labels = logits.detach().to("cpu", torch.float32), labels.detach().to("cpu", torch.int64)
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"labels hold {high if high >= self.num_classes else low} but num_classes is {self.num_classes}: "
                "the data module's classes and the model's num_classes differ"
            )
        for metric in self.metrics.values():
            metric.update(logits, labels)
        self.seen += len(labels)

    def compute(self) -> dict[str, float]:
        """``top<k>`` for each k of ``top_k`` that is at most ``num_classes``."""
        if not total(self.seen):
            return {f"top{k}": 0.0 for k in self.top_k}
        with warnings.catch_warnings():  # a process that scored no image of its share still takes part
            warnings.filterwarnings("ignore", message=".*was called before the ``update``.*")
            return {f"top{k}": float(metric.compute()) for k, metric in self.metrics.items()}


class AttributeEvaluator:
    """Mean average precision and mean accuracy of binary attributes (multi-label, e.g. CelebA's 40) over a
    whole split.

    Args:
        names: one name per attribute, used in the ``ap/<name>`` and ``acc/<name>`` keys.
        threshold: an attribute is predicted present when its probability (sigmoid of the logit) is above this.

    ``update(logits, labels)`` takes logits [B, K] (the sigmoid is applied here) and 0/1 labels [B, K] (float,
    integer or bool). ``compute()`` returns, in float:

    - ``ap/<name>``: the non-interpolated average precision of the attribute, the mean over its positive images
      of the precision among the images scored at least as high (torchmetrics' exact AP). AP is *undefined* for
      an attribute without any positive image in the split (there is no recall to reach): such an attribute has
      no ``ap/`` key and is left out of the mean, rather than counted as 0 or 1;
    - ``map``: the mean of the defined APs (0.0 when none is), and ``ap_undefined``: how many were left out;
    - ``acc/<name>``: the share of images whose attribute is predicted right (present or absent);
    - ``accuracy``: the mean of these per-attribute accuracies (0.0 before any image was seen).

    Example:
        >>> evaluator = AttributeEvaluator(["smiling", "bald"])
        >>> logits = torch.tensor([[2.0, -1.0], [-1.0, 1.0], [1.0, -2.0]])
        >>> evaluator.update(logits, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
        >>> metrics = evaluator.compute()  # "bald" has no positive image: no AP; its one false alarm costs accuracy
        >>> metrics["map"], metrics["ap_undefined"], round(metrics["accuracy"], 4)
        (1.0, 1.0, 0.6667)
        >>> sorted(metrics)
        ['acc/bald', 'acc/smiling', 'accuracy', 'ap/smiling', 'ap_undefined', 'map']
    """

    def __init__(self, names: Sequence[str], threshold: float = 0.5):
        self.names = [str(n) for n in names]
        if len(self.names) < 1:
            raise ValueError("names is empty; pass one name per attribute, e.g. the columns of list_attr_celeba.txt")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is {threshold}; it applies to probabilities, so pass a value in [0, 1]")
        self.threshold = threshold
        k = len(self.names)
        self.ap = MultilabelAveragePrecision(k, average=None, validate_args=False, dist_sync_fn=gather_tensors)
        self.acc = MultilabelAccuracy(
            k, threshold=threshold, average=None, validate_args=False, dist_sync_fn=gather_tensors
        )
        self.positives = torch.zeros(k, dtype=torch.int64)
        self.seen = 0

    def reset(self) -> None:
        """Forget every image seen."""
        self.ap.reset()
        self.acc.reset()
        self.positives.zero_()
        self.seen = 0

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch: ``logits`` [B, K] and ``labels`` [B, K], 0 (absent) or 1 (present)."""
        k = len(self.names)
        _check_logits(logits, k, "attribute")
        if labels.shape != logits.shape:
            raise ValueError(
                f"labels have shape {tuple(labels.shape)} for logits of shape {tuple(logits.shape)}; pass one 0/1 "
                f"value per image and attribute [B, {k}]"
            )
        if not len(labels):
            return
        labels = labels.detach().cpu()
        bad = (labels != 0) & (labels != 1)
        if bool(bad.any()):
            raise ValueError(
                f"labels hold {labels[bad][0].item()}, not 0 or 1; attribute labels must be 0/1 (CelebA's text "
                "file says -1 for absent: map it to 0)"
            )
        labels = labels.to(torch.int64)
        probabilities = logits.detach().to("cpu", torch.float32).sigmoid()  # torchmetrics' threshold is on these
        self.ap.update(probabilities, labels)
        self.acc.update(probabilities, labels)
        self.positives += labels.sum(dim=0)
        self.seen += len(labels)

    def compute(self) -> dict[str, float]:
        """``map``, ``ap_undefined``, ``accuracy``, then ``ap/<name>`` (defined APs only) and ``acc/<name>``."""
        k = len(self.names)
        if not total(self.seen):
            return {"map": 0.0, "ap_undefined": float(k), "accuracy": 0.0}
        with warnings.catch_warnings():  # torchmetrics warns about attributes without positives: handled here
            warnings.filterwarnings("ignore", message=".*[Nn]o positive samples.*")
            warnings.filterwarnings("ignore", message=".*was called before the ``update``.*")
            ap = self.ap.compute().to(torch.float64).reshape(k)  # one attribute: torchmetrics gives a scalar
            accuracy = self.acc.compute().to(torch.float64).reshape(k)
        defined = total(self.positives) > 0
        return {
            "map": float(ap[defined].mean()) if bool(defined.any()) else 0.0,
            "ap_undefined": float(k - int(defined.sum())),
            "accuracy": float(accuracy.mean()),
            **{f"ap/{n}": float(ap[i]) for i, n in enumerate(self.names) if defined[i]},
            **{f"acc/{n}": float(accuracy[i]) for i, n in enumerate(self.names)},
        }
