"""Image classification metrics: top-k accuracy (ImageNet, fine-grained) and attribute mAP / accuracy (CelebA).

Both evaluators accumulate a whole split through torchmetrics and read the metrics at the end, so the result
does not depend on how the split was batched, nor on how many processes shared it (``compute()`` gathers every
process's states first, :mod:`mobiletasks.evaluation.distributed`). Inputs are checked here, with errors that
name the mismatch, and moved to the CPU (the states are small: counts, and for AP one score per image and attribute).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
)

from .distributed import gather_tensors, total
from .plots import Row, attribute_ap_figure, attribute_ap_table, confusion_matrix_figure, confusion_matrix_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AttributeEvaluator", "ClassificationEvaluator"]


def _is_integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _not_computed() -> RuntimeError:
    return RuntimeError("figures() and tables() show what compute() found: call compute() first")


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
        class_names: one name per class, for the axes of the confusion matrix; default ``"0"``, ``"1"``, ...

    ``update(logits, labels)`` takes logits (or probabilities) [B, K] and class indices [B]; an empty batch is
    fine. ``compute()`` returns ``{"top1": ..., "top5": ...}`` in float, 0.0 before any image was seen. It also
    reads the confusion matrix of the top-1 predictions (rows: true class), kept in ``computed``: ``figures()``
    and ``tables()`` give it under ``"confusion_matrix"`` (normalized per row, and as image counts whose trace
    divided by their sum is ``top1``).

    Example:
        >>> evaluator = ClassificationEvaluator(3, top_k=(1, 2, 5))
        >>> evaluator.update(torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), torch.tensor([1, 2]))
        >>> evaluator.compute()  # the second image: class 2 is second best; k=5 > 3 classes is left out
        {'top1': 0.5, 'top2': 1.0}
        >>> evaluator.tables()["confusion_matrix"][1:]  # the second image, of class 2, predicted as 0
        [['0', 0, 0, 0], ['1', 0, 1, 0], ['2', 1, 0, 0]]
    """

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), class_names: Sequence[str] | None = None):
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}; classification needs at least 2 classes")
        if any(k < 1 for k in top_k):
            raise ValueError(f"top_k is {tuple(top_k)}; each k must be at least 1, e.g. (1, 5)")
        names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(
                f"class_names has {len(names)} names for num_classes={num_classes}; give one name per class "
                "(the data module's class_names)"
            )
        self.num_classes = num_classes
        self.class_names = names
        self.top_k = sorted({k for k in top_k if k <= num_classes})
        # the inputs are checked in update (cheaply), so torchmetrics' own checks are off
        self.metrics = {
            k: MulticlassAccuracy(
                num_classes, top_k=k, average="micro", validate_args=False, dist_sync_fn=gather_tensors
            )
            for k in self.top_k
        }
        self.confusion = MulticlassConfusionMatrix(num_classes, validate_args=False, dist_sync_fn=gather_tensors)
        self.computed: Tensor | None = None  # the int64 [K, K] confusion matrix of the last compute()
        self.seen = 0

    def reset(self) -> None:
        """Forget every image seen (and the last ``compute()``)."""
        for metric in self.metrics.values():
            metric.reset()
        self.confusion.reset()
        self.computed = None
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
        self.confusion.update(logits.argmax(dim=1), labels)
        self.seen += len(labels)

    def compute(self) -> dict[str, float]:
        """``top<k>`` for each k of ``top_k`` that is at most ``num_classes``; under ``torch.distributed`` over the
        images of every process (each must call it), whose confusion matrix is then in ``computed`` on each."""
        if not total(self.seen):
            self.computed = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
            return {f"top{k}": 0.0 for k in self.top_k}
        with warnings.catch_warnings():  # a process that scored no image of its share still takes part
            warnings.filterwarnings("ignore", message=".*was called before the ``update``.*")
            self.computed = self.confusion.compute().detach().to("cpu", torch.int64)
            return {f"top{k}": float(metric.compute()) for k, metric in self.metrics.items()}

    def figures(self) -> dict[str, Figure]:
        """``{"confusion_matrix": Figure}`` of the last ``compute()``: the top-1 confusion matrix divided by its
        ground-truth row sums (the diagonal is each class's recall), class names on both axes; ``{}`` when no
        image was seen. ``RuntimeError`` before ``compute()``."""
        if self.computed is None:
            raise _not_computed()
        count = int(self.computed.sum())
        if not count:
            return {}
        title = f"Top-1 predictions per true class, normalized per row ({count} images)"
        return {"confusion_matrix": confusion_matrix_figure(self.computed.numpy(), self.class_names, title)}

    def tables(self) -> dict[str, list[Row]]:
        """``{"confusion_matrix": rows}`` of the last ``compute()``: ``["ground truth \\ prediction", *class_names]``,
        then per true class ``[name, *image counts]`` (top-1, not normalized; trace / sum is ``top1``); ``{}`` as
        ``figures()``."""
        if self.computed is None:
            raise _not_computed()
        if not int(self.computed.sum()):
            return {}
        return {"confusion_matrix": confusion_matrix_table(self.computed.numpy(), self.class_names)}


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

    After ``compute()``, ``figures()`` and ``tables()`` give under ``"attribute_ap"`` the defined ``ap/<name>``
    as sorted bars with ``map`` as a line, and as rows.

    Example:
        >>> evaluator = AttributeEvaluator(["smiling", "bald"])
        >>> logits = torch.tensor([[2.0, -1.0], [-1.0, 1.0], [1.0, -2.0]])
        >>> evaluator.update(logits, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
        >>> metrics = evaluator.compute()  # "bald" has no positive image: no AP; its one false alarm costs accuracy
        >>> metrics["map"], metrics["ap_undefined"], round(metrics["accuracy"], 4)
        (1.0, 1.0, 0.6667)
        >>> sorted(metrics)
        ['acc/bald', 'acc/smiling', 'accuracy', 'ap/smiling', 'ap_undefined', 'map']
        >>> evaluator.tables()
        {'attribute_ap': [['attribute', 'ap'], ['smiling', 1.0]]}
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
        self.computed: dict[str, float] | None = None  # the metrics of the last compute()

    def reset(self) -> None:
        """Forget every image seen (and the last ``compute()``)."""
        self.ap.reset()
        self.acc.reset()
        self.positives.zero_()
        self.seen = 0
        self.computed = None

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
        self.computed = self._compute()
        return dict(self.computed)

    def _compute(self) -> dict[str, float]:
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

    def _aps(self) -> tuple[dict[str, float], dict[str, float]]:
        """The metrics of the last ``compute()`` and their defined APs by attribute name."""
        if self.computed is None:
            raise _not_computed()
        computed = self.computed
        return computed, {n: computed[f"ap/{n}"] for n in self.names if f"ap/{n}" in computed}

    def figures(self) -> dict[str, Figure]:
        """``{"attribute_ap": Figure}`` of the last ``compute()``: a bar per attribute with a defined AP, sorted,
        ``map`` as a vertical line, the number left out in the title; ``{}`` when no AP is defined (no image seen,
        or no positive). ``RuntimeError`` before ``compute()``."""
        computed, aps = self._aps()
        if not aps:
            return {}
        return {"attribute_ap": attribute_ap_figure(aps, computed["map"], int(computed["ap_undefined"]))}

    def tables(self) -> dict[str, list[Row]]:
        """``{"attribute_ap": rows}`` of the last ``compute()``: ``["attribute", "ap"]``, then the defined APs,
        highest first (``ap/<name>`` exactly); ``{}`` as ``figures()``."""
        _, aps = self._aps()
        return {"attribute_ap": attribute_ap_table(aps)} if aps else {}
