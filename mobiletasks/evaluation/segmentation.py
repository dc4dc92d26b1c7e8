"""Semantic segmentation metrics: mIoU, per-class IoU and pixel accuracy over a whole split, as PASCAL VOC does.

One confusion matrix (rows: ground truth, columns: prediction) is accumulated through torchmetrics over every
pixel of the split, and the metrics are read from it at the end. Averaging per-batch or per-image mIoUs would
weight small images and rare classes differently and is *not* what VOC reports.

``multiscale_logits`` is the test-time augmentation of DeepLab: the class probabilities averaged over rescaled
and mirrored copies of the input (the "MF" rows of the MobileNetV2 paper, Table 7).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from .distributed import gather_tensors, world_size
from .plots import Row, confusion_matrix_figure, confusion_matrix_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SegmentationEvaluator", "multiscale_logits"]

log = logging.getLogger(__name__)


class SegmentationEvaluator:
    """mIoU, per-class IoU and pixel accuracy of semantic segmentation, accumulated over a whole split.

    Args:
        num_classes: the classes, background included (VOC: 21); at least 2.
        class_names: one name per class, used in the ``iou/<name>`` keys; default ``"0"``, ``"1"``, ...
        ignore_index: the mask value of pixels that are never counted (VOC: 255, the band around objects and
            the padding); it must not be a class index. None: every pixel counts.

    ``update(preds, masks)`` takes logits ``[B, K, H, W]`` (their argmax over K is the prediction) or labels
    ``[B, H, W]``, and the ground truth ``[B, H, W]`` (integer class indices, or ``ignore_index``).

    ``compute()`` returns, in float:

    - ``iou/<name>``: TP / (TP + FP + FN) of the class, from the confusion matrix of all pixels seen. A class
      that occurs neither in the ground truth nor in the predictions (TP + FP + FN = 0) has no IoU: its key
      says -1.0, "missing" (torchmetrics' ``MeanIoU(per_class=True)`` marks it so; the VOC devkit would give
      NaN), never 0 or a perfect 1. A class that is only predicted, never in the ground truth, has IoU 0;
    - ``miou``: the mean of the IoUs that exist (missing classes are left out; on the full VOC val set every
      class occurs);
    - ``classes_missing``: how many classes never occur in the ground truth seen (a warning names them: a class
      the data never shows cannot be scored, and the mean covers the others only);
    - ``pixel_acc``: correctly labelled pixels / counted pixels.

    With no counted pixel at all, ``miou`` and ``pixel_acc`` are 0.0 and every class is missing.

    After ``compute()``, ``figures()`` gives under ``"confusion_matrix"`` the matrix normalized per ground-truth
    row, and ``tables()`` its pixel counts, from which IoU = diag / (row + column - diag) is ``iou/<name>``.

    Example:
        >>> evaluator = SegmentationEvaluator(3, ["background", "cat", "dog"])
        >>> mask = torch.tensor([[[0, 0, 1, 255]]])  # the last pixel is not counted
        >>> pred = torch.tensor([[[0, 1, 1, 2]]])
        >>> evaluator.update(pred, mask)
        >>> metrics = evaluator.compute()  # background 1/2, cat 1/2, dog absent from both: missing
        >>> metrics["miou"], metrics["classes_missing"], metrics["iou/cat"], metrics["iou/dog"]
        (0.5, 1.0, 0.5, -1.0)
        >>> evaluator.tables()["confusion_matrix"][1]  # background pixels: 1 right, 1 predicted as cat
        ['background', 1, 1, 0]
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore_index: int | None = 255):
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}; segmentation needs at least 2 (background included)")
        names = [str(c) for c in range(num_classes)] if class_names is None else list(class_names)
        if len(names) != num_classes:
            raise ValueError(
                f"class_names has {len(names)} names for num_classes={num_classes}; give one name per class, "
                "background included (e.g. VOC: 'background' then the 20 classes)"
            )
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index is {ignore_index}, a class index of 0..{num_classes - 1}; use a value outside the "
                "classes (VOC: 255), and map a class you want left out to it in the masks"
            )
        self.num_classes, self.class_names, self.ignore_index = num_classes, names, ignore_index
        # the inputs are checked here (cheaply), so torchmetrics' own checks (torch.unique per batch) are off
        self.metric = MulticlassConfusionMatrix(
            num_classes, ignore_index=ignore_index, validate_args=False, dist_sync_fn=gather_tensors
        )
        self.computed: Tensor | None = None  # the int64 [K, K] matrix of the last compute()

    def reset(self) -> None:
        """Forget every pixel seen (and the last ``compute()``)."""
        self.metric.reset()
        self.computed = None

    def update(self, preds: Tensor, masks: Tensor) -> None:
        """Add a batch: ``preds`` logits [B, K, H, W] or labels [B, H, W], ``masks`` [B, H, W] class indices."""
        if masks.ndim != 3 or masks.is_floating_point() or masks.is_complex() or masks.dtype == torch.bool:
            raise ValueError(
                f"masks have shape {tuple(masks.shape)} and dtype {masks.dtype}; pass integer class indices "
                "[B, H, W] (e.g. int64, with ignore_index for pixels not to count)"
            )
        masks = masks.detach()
        if preds.ndim == 4:
            if preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {preds.shape[1]} channels (shape {tuple(preds.shape)}) for {self.num_classes} "
                    "classes; pass [B, num_classes, H, W] logits or [B, H, W] labels"
                )
            labels = preds.detach().argmax(dim=1)
        elif preds.ndim == 3 and not (preds.is_floating_point() or preds.is_complex() or preds.dtype == torch.bool):
            labels = preds.detach()
        else:
            raise ValueError(
                f"predictions have shape {tuple(preds.shape)} and dtype {preds.dtype}; pass logits "
                "[B, num_classes, H, W] or integer labels [B, H, W]"
            )
        if labels.shape != masks.shape:
            raise ValueError(
                f"predictions of shape {tuple(labels.shape)} (after argmax) and masks of shape {tuple(masks.shape)} "
                "differ; predict at the resolution of the masks (the model's logits are at input resolution)"
            )
        if self.metric.device != labels.device:
            self.metric.to(labels.device)  # moves the accumulated matrix too
        masks = masks.to(labels.device, torch.int64)
        labels = labels.to(torch.int64)
        counted = (
            masks != self.ignore_index if self.ignore_index is not None else torch.ones_like(masks, dtype=torch.bool)
        )
        self._check_range(masks, counted, "mask")
        if preds.ndim == 3:
            self._check_range(labels, counted, "predicted label")
        self.metric.update(labels, masks)

    def _check_range(self, values: Tensor, counted: Tensor, kind: str) -> None:
        bad = counted & ((values < 0) | (values >= self.num_classes))
        if bool(bad.any()):
            value = int(values[bad][0])
            ignore = f" or ignore_index {self.ignore_index}" if self.ignore_index is not None and kind == "mask" else ""
            raise ValueError(
                f"a {kind} value is {value}, not a class index of 0..{self.num_classes - 1}{ignore}; check "
                f"num_classes ({self.num_classes}) and the class map of the masks"
            )

    @property
    def confusion_matrix(self) -> Tensor:
        """The accumulated int64 matrix [K, K]: entry (i, j) counts pixels of class i predicted as j, summed over
        the processes under ``torch.distributed`` (every process must read it then)."""
        if not self.metric.update_called and world_size() == 1:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        with warnings.catch_warnings():  # a process that scored no image of its share still takes part
            warnings.filterwarnings("ignore", message=".*was called before the ``update``.*")
            matrix: Tensor = self.metric.compute()
        return matrix.detach().to("cpu", torch.int64)

    def compute(self) -> dict[str, float]:
        """``miou``, ``pixel_acc``, ``classes_missing`` and ``iou/<name>`` of every class (-1.0: missing); the
        matrix read (the whole split under ``torch.distributed``: every process must call it) is kept in
        ``computed`` for ``figures()`` and ``tables()``."""
        self.computed = self.confusion_matrix
        matrix = self.computed.to(torch.float64)
        total = float(matrix.sum())
        tp = matrix.diagonal()
        union = matrix.sum(dim=0) + matrix.sum(dim=1) - tp  # predicted + ground truth - both = TP + FP + FN
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), -1.0)
        missing = [n for c, n in enumerate(self.class_names) if matrix[c].sum() == 0]
        if missing and total:
            log.warning(
                "%d of %d classes never occur in the ground truth scored (%s): their IoU is missing (-1) or 0 where "
                "predicted, and miou covers the classes that occur",
                len(missing),
                self.num_classes,
                ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else ""),
            )
        return {
            "miou": float(iou[present].mean()) if total else 0.0,
            "pixel_acc": float(tp.sum()) / total if total else 0.0,
            "classes_missing": float(len(missing)),
            **{f"iou/{n}": float(iou[c]) for c, n in enumerate(self.class_names)},
        }

    def _computed(self) -> Tensor:
        if self.computed is None:
            raise RuntimeError("figures() and tables() show what compute() found: call compute() first")
        return self.computed

    def figures(self) -> dict[str, Figure]:
        """``{"confusion_matrix": Figure}`` of the last ``compute()``: the pixel counts divided by their
        ground-truth row sums (the diagonal is each class's recall), class names on both axes; ``{}`` when no pixel
        was counted. ``RuntimeError`` before ``compute()``."""
        matrix = self._computed()
        if not int(matrix.sum()):
            return {}
        title = f"Pixels per ground-truth class, normalized per row ({int(matrix.sum())} pixels)"
        return {"confusion_matrix": confusion_matrix_figure(matrix.numpy(), self.class_names, title)}

    def tables(self) -> dict[str, list[Row]]:
        """``{"confusion_matrix": rows}`` of the last ``compute()``: ``["ground truth \\ prediction", *class_names]``,
        then per class ``[name, *pixel counts]`` (not normalized); ``{}`` as ``figures()``."""
        matrix = self._computed()
        if not int(matrix.sum()):
            return {}
        return {"confusion_matrix": confusion_matrix_table(matrix.numpy(), self.class_names)}


def multiscale_logits(
    model: Callable[[Tensor], dict[str, Tensor]],
    images: Tensor,
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
    flip: bool = True,
) -> Tensor:
    """Class *probabilities* [B, K, H, W] averaged over rescaled (and mirrored) copies of ``images`` [B, 3, H, W].

    DeepLab's multi-scale and flip evaluation (MobileNetV2 paper, Table 7, "MF"; DeepLabV3 section 4.3): for
    each scale the batch is resized (bilinear, ``align_corners=False``, to ``round(H * scale)`` x
    ``round(W * scale)``), ``model(x)["out"]`` is resized back to H x W and turned into probabilities by a
    softmax over the classes; with ``flip``, the same for the left-right mirrored input, whose output is
    mirrored back. The result is the mean of these probabilities: not logits, but their argmax is the
    prediction, which is all the evaluator needs.

    The model runs as the caller left it: put it in eval mode and under ``torch.no_grad()`` (as Lightning's
    validation does) before calling.

    Example:
        >>> model = lambda x: {"out": torch.cat([x[:, :1], 1 - x[:, :1]], dim=1)}  # 2 classes from the red channel
        >>> multiscale_logits(model, torch.rand(1, 3, 37, 53), scales=(0.75, 1.0)).shape
        torch.Size([1, 2, 37, 53])
    """
    if images.ndim != 4:
        raise ValueError(f"images have shape {tuple(images.shape)}; pass a batch [B, 3, H, W]")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales are {tuple(scales)}; pass one or more positive factors, e.g. (0.5, 1.0, 1.5)")
    size = (images.shape[-2], images.shape[-1])
    total: Tensor | None = None
    count = 0
    for scale in scales:
        scaled_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        x = images if scaled_size == size else F.interpolate(images, scaled_size, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            logits = model(x.flip(-1) if mirrored else x)["out"]
            if mirrored:
                logits = logits.flip(-1)
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size, mode="bilinear", align_corners=False)
            probs = logits.float().softmax(dim=1)  # averaged in float32, also under mixed precision
            total = probs if total is None else total + probs
            count += 1
    assert total is not None  # scales is not empty
    return total / count
