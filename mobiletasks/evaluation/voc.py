"""Pascal VOC box mAP, as the VOC devkit's ``VOCevaldet.m`` and ``VOCap.m`` compute it.

Per class, detections of all images are ranked by score; each one is matched to the ground-truth box of its
class it overlaps most (IoU >= 0.5, the devkit's ``ovmax >= minoverlap``). It is a true positive if that box is
not matched yet, a false positive if it is (a duplicate) or if no box overlaps enough; detections matched to a
``difficult`` box count as neither, and difficult boxes are not among the positives to find. Boxes are
continuous xyxy, so the IoU equals the devkit's on its 1-based inclusive pixel boxes (whose widths are
``xmax - xmin + 1``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from .coco_json import id_order
from .distributed import gather
from .plots import Curve, Row, pr_curve_figure, pr_curve_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionEnvelope:
    """The precision-recall curve of VOC2010+ AP (``VOCap.m``): the precision envelope of ranked detections.

    Attributes:
        found: float64 [N + 2], the true positives among the first n ranked detections for n = 0..N, then
            ``num_gt`` (the devkit's ``mrec = [0; rec; 1]`` times ``num_gt``: counts, so steps are exact).
        precision: float64 [N + 2], the envelope: the highest precision at rank n or later (the devkit's
            ``mpre = [0; prec; 0]`` made monotone decreasing), so the last entry is 0.
        num_gt: the positives to find (at least 1).

    The AP is the area under the step curve that holds ``precision[i]`` on recall ``(recall[i-1], recall[i]]``.
    """

    found: Tensor
    precision: Tensor
    num_gt: int

    @property
    def recall(self) -> Tensor:
        """float64 [N + 2]: ``found / num_gt``."""
        return self.found / self.num_gt

    def area(self) -> float:
        """VOC2010+ AP: the sum over the recall steps of their width times the envelope after the step."""
        return float(((self.found[1:] - self.found[:-1]) * self.precision[1:]).sum() / self.num_gt)

    def steps(self) -> tuple[Tensor, Tensor]:
        """(recall, precision) of the corners only: the first point and each point where recall grows (the other
        points add steps of width 0). Drawn with ``drawstyle="steps-pre"``, the area under them is :meth:`area`
        (up to float rounding)."""
        keep = torch.ones(len(self.found), dtype=torch.bool)
        keep[1:] = self.found[1:] > self.found[:-1]
        return self.recall[keep], self.precision[keep]


def precision_envelope(scores: Tensor, tp: Tensor, num_gt: int) -> PrecisionEnvelope:
    """The precision envelope of ranked detections (:class:`PrecisionEnvelope`): ``scores`` [N], ``tp`` [N] bool
    (false = false positive), ``num_gt`` positives. Ties in score keep the given order, as the devkit's sort does.
    ``ValueError`` for ``num_gt`` < 1.

    Example:
        >>> # ranked TP, FP, TP with 2 positives: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
        >>> curve = precision_envelope(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2)
        >>> [[round(v, 4) for v in t.tolist()] for t in curve.steps()]
        [[0.0, 0.5, 1.0], [1.0, 1.0, 0.6667]]
        >>> round(curve.area(), 4)  # 1/2 * 1 + 1/2 * 2/3
        0.8333
    """
    if num_gt <= 0:
        raise ValueError(f"num_gt is {num_gt}; AP needs at least one ground-truth box")
    ctp, precision = _ranked(scores, tp)
    # VOCap.m: mrec = [0; rec; 1], mpre = [0; prec; 0]; the envelope is the running max from the right;
    # the recall steps are taken on the counts (mrec * num_gt), so that a perfect ranking gives exactly 1
    zero = torch.zeros(1, dtype=torch.float64)
    found = torch.cat([zero, ctp, torch.full((1,), float(num_gt), dtype=torch.float64)])
    mpre = torch.cat([zero, precision, zero])
    return PrecisionEnvelope(found, mpre.flip(0).cummax(0).values.flip(0), num_gt)


def _ranked(scores: Tensor, tp: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true positives and precision [N] float64 of the detections ranked by score (stable)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    ctp = tp[order].to(torch.float64).cumsum(0)
    return ctp, ctp / torch.arange(1, len(ctp) + 1, dtype=torch.float64)


def average_precision(scores: Tensor, tp: Tensor, num_gt: int, *, use_07_metric: bool = False) -> float:
    """AP of ranked detections: ``scores`` [N], ``tp`` [N] bool (false = false positive), ``num_gt`` positives.

    VOC2010 and later (``use_07_metric=False``): the area under the precision envelope (the precision made
    monotone decreasing in recall; :func:`precision_envelope`). VOC2007: the mean over recall thresholds 0, 0.1,
    ..., 1 of the highest precision at a recall of at least the threshold (0 where that recall is never
    reached). Ties in score keep the given order, as the devkit's sort does.

    Example:
        >>> # ranked TP, FP, TP with 2 positives: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
        >>> scores, tp = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True])
        >>> round(average_precision(scores, tp, 2), 4)  # 1/2 * 1 + 1/2 * 2/3
        0.8333
        >>> round(average_precision(scores, tp, 2, use_07_metric=True), 4)  # (6 * 1 + 5 * 2/3) / 11
        0.8485
    """
    if num_gt <= 0:
        raise ValueError(f"num_gt is {num_gt}; AP needs at least one ground-truth box")
    if len(scores) == 0:
        return 0.0
    if not use_07_metric:
        return precision_envelope(scores, tp, num_gt).area()
    ctp, precision = _ranked(scores, tp)
    # recall >= k/10 is exact in float64: both sides are correctly rounded quotients of small integers
    thresholds = torch.arange(11, dtype=torch.float64) / 10
    reached = (ctp / num_gt)[None, :] >= thresholds[:, None]  # [11, N]
    return float(torch.where(reached, precision[None, :], 0.0).amax(dim=1).mean())


class VOCEvaluator:
    """Pascal VOC mAP at one IoU threshold: ``map`` (VOC2010+ area), ``map_07`` (VOC2007 11-point), ``ap/<class>``.

    Args:
        class_names: the name of each contiguous label, e.g. the 20 VOC classes.
        iou_threshold: the overlap a detection needs to match a box (VOC: 0.5).

    ``update(preds, targets)`` takes per image a prediction dict (``boxes`` xyxy, ``scores``, ``labels``) and
    a target dict (``boxes``, ``labels``, optional ``difficult`` bool, optional ``image_id``: under several
    processes the images are ranked in its order, so that detections of equal score rank as in one process).
    Classes without any (non-difficult) ground truth have no AP (the devkit would give NaN): their ``ap/<class>``
    says -1.0, "missing", they are left out of the means, and ``classes_missing`` counts them.
    After ``compute()``, ``figures()`` and ``tables()`` give under ``"pr_curve"`` the precision envelope of each
    class with ground truth, whose area is its ``ap/<class>``.

    Example:
        >>> evaluator = VOCEvaluator(["cat", "dog"])
        >>> target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
        >>> pred = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 9.0]]), "scores": torch.tensor([0.8]),
        ...     "labels": torch.tensor([1])}
        >>> evaluator.update([pred], [target])
        >>> evaluator.compute()  # no cat in the ground truth: missing
        {'map': 1.0, 'map_07': 1.0, 'classes_missing': 1.0, 'ap/cat': -1.0, 'ap/dog': 1.0}
        >>> evaluator.tables()["pr_curve"]  # dog's envelope: precision 1 up to recall 1
        [['class', 'recall', 'precision'], ['dog', 0.0, 1.0], ['dog', 1.0, 1.0]]
    """

    def __init__(self, class_names: Sequence[str], iou_threshold: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold is {iou_threshold}; it must be in (0, 1], e.g. 0.5 as in VOC")
        self.class_names = list(class_names)
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._ids: list[Any] = []  # per image, the target's image_id (None without): the order of the ranking's ties
        self._labels: list[Tensor] = []  # per image, of the detections that count (not matched to difficult)
        self._scores: list[Tensor] = []
        self._tp: list[Tensor] = []
        self._num_gt = torch.zeros(len(self.class_names), dtype=torch.int64)
        self._curves: dict[str, tuple[PrecisionEnvelope, float]] | None = None  # of the last compute(), by class

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Any]]) -> None:
        """Add one batch: a prediction dict and a target dict per image."""
        if len(preds) != len(targets):
            raise ValueError(f"update got {len(preds)} predictions and {len(targets)} targets; pass one per image")
        for pred, target in zip(preds, targets, strict=True):
            gt_boxes = target["boxes"].detach().to("cpu", torch.float32).reshape(-1, 4)
            gt_labels = self._check_labels(target["labels"], "target")
            difficult = target.get("difficult")
            gt_difficult = (
                torch.zeros(len(gt_labels), dtype=torch.bool)
                if difficult is None
                else difficult.detach().to("cpu", torch.bool).reshape(-1)
            )
            if not len(gt_boxes) == len(gt_labels) == len(gt_difficult):
                raise ValueError(
                    f"a target has {len(gt_boxes)} boxes, {len(gt_labels)} labels and {len(gt_difficult)} "
                    "difficult flags; it needs one label (and flag) per box"
                )
            boxes = pred["boxes"].detach().to("cpu", torch.float32).reshape(-1, 4)
            inverted = (boxes[:, 2:] < boxes[:, :2]).any(dim=1)
            if bool(inverted.any()):
                raise ValueError(
                    f"{int(inverted.sum())} predicted boxes have x2 < x1 or y2 < y1 "
                    f"(e.g. {boxes[inverted][0].tolist()}); "
                    "pass boxes as xyxy pixels, corners in that order"
                )
            labels = self._check_labels(pred["labels"], "prediction")
            scores = pred["scores"].detach().to("cpu", torch.float64).reshape(-1)
            if not len(boxes) == len(labels) == len(scores):
                raise ValueError(
                    f"a prediction has {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores; "
                    "it needs one label and one score per box"
                )
            self._num_gt += torch.bincount(gt_labels[~gt_difficult], minlength=len(self.class_names))
            tp, ignore = self._match(boxes, labels, scores, gt_boxes, gt_labels, gt_difficult)
            image_id = target.get("image_id")
            self._ids.append(int(image_id) if isinstance(image_id, Tensor) else image_id)
            self._labels.append(labels[~ignore])
            self._scores.append(scores[~ignore])
            self._tp.append(tp[~ignore])

    def _match(
        self, boxes: Tensor, labels: Tensor, scores: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_difficult: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per detection: true positive, and matched to a difficult box (ignored); greedy by score, per class."""
        tp = torch.zeros(len(boxes), dtype=torch.bool)
        ignore = torch.zeros(len(boxes), dtype=torch.bool)
        if len(boxes) == 0 or len(gt_boxes) == 0:
            return tp, ignore
        order = torch.sort(scores, descending=True, stable=True).indices
        iou = box_iou(boxes[order], gt_boxes)
        iou[labels[order][:, None] != gt_labels[None, :]] = -1.0  # a detection only sees boxes of its class
        ovmax, jmax = iou.max(dim=1)  # the devkit's best box, matched or not (first of equals)
        hit = ovmax >= self.iou_threshold
        ignore_sorted = hit & gt_difficult[jmax]
        candidate = hit & ~gt_difficult[jmax]
        # the first candidate (highest score) on each box is the true positive; later ones are duplicates
        rank = torch.arange(len(boxes))
        first = torch.full((len(gt_boxes),), len(boxes), dtype=torch.int64)
        first.scatter_reduce_(0, jmax[candidate], rank[candidate], reduce="amin")
        tp[order] = candidate & (first[jmax] == rank)
        ignore[order] = ignore_sorted
        return tp, ignore

    def _check_labels(self, labels: Tensor, kind: str) -> Tensor:
        labels = labels.detach().to("cpu", torch.int64).reshape(-1)
        bad = labels[(labels < 0) | (labels >= len(self.class_names))]
        if len(bad):
            raise ValueError(
                f"a {kind} has label {int(bad[0])}, not in 0..{len(self.class_names) - 1}; labels are contiguous "
                f"indices into class_names ({len(self.class_names)} classes)"
            )
        return labels

    def compute(self) -> dict[str, float]:
        """``map`` and ``map_07`` over the classes with ground truth (0.0 when none has any), ``classes_missing``
        and ``ap/<class>`` of every class (-1.0: no ground truth); under ``torch.distributed`` over the images of
        every process (each must call it)."""
        states = gather((list(zip(self._ids, self._labels, self._scores, self._tp, strict=True)), self._num_gt))
        images = [image for state, _ in states for image in state]
        if len(states) > 1 and all(image[0] is not None for image in images):
            # the images in the order of one process, so that detections of equal score rank alike
            images.sort(key=lambda image: id_order(image[0]))
        labels = torch.cat([torch.zeros(0, dtype=torch.int64), *(image[1] for image in images)])
        scores = torch.cat([torch.zeros(0, dtype=torch.float64), *(image[2] for image in images)])
        tp = torch.cat([torch.zeros(0, dtype=torch.bool), *(image[3] for image in images)])
        num_gt = torch.stack([num for _, num in states]).sum(0)
        seen = bool(images)
        aps: dict[str, float] = {}
        aps_07: list[float] = []
        self._curves = {}
        for c, name in enumerate(self.class_names):
            num_gt_c = int(num_gt[c])
            if num_gt_c == 0:
                aps[f"ap/{name}"] = -1.0
                continue
            mine = labels == c
            curve = precision_envelope(scores[mine], tp[mine], num_gt_c)
            aps[f"ap/{name}"] = curve.area()
            self._curves[name] = (curve, aps[f"ap/{name}"])
            aps_07.append(average_precision(scores[mine], tp[mine], num_gt_c, use_07_metric=True))
        found = [ap for ap in aps.values() if ap >= 0]
        if not found and seen:
            log.warning("no image scored holds a ground-truth box (all classes missing): map is 0 by convention")
        return {
            "map": sum(found) / len(found) if found else 0.0,
            "map_07": sum(aps_07) / len(aps_07) if aps_07 else 0.0,
            "classes_missing": float(len(aps) - len(found)),
            **aps,
        }

    def curves(self) -> list[Curve]:
        """Per class with ground truth, in ``class_names`` order, the corners of its precision envelope
        (:meth:`PrecisionEnvelope.steps`) as a step curve. ``RuntimeError`` before ``compute()``."""
        if self._curves is None:
            raise RuntimeError("figures() and tables() show what compute() found: call compute() first")
        curves = []
        for name, (envelope, ap) in self._curves.items():
            recall, precision = envelope.steps()
            curves.append(Curve(name, recall.numpy(), precision.numpy(), ap, step=True))
        return curves

    def figures(self) -> dict[str, Figure]:
        """``{"pr_curve": Figure}`` of the last ``compute()``: per class with ground truth, its precision envelope
        against recall as a step curve whose area is ``ap/<class>`` (VOC2010+); ``{}`` when no class has ground
        truth. ``RuntimeError`` before ``compute()``."""
        curves = self.curves()
        if not curves:
            return {}
        title = (
            f"VOC precision envelope per class (IoU >= {self.iou_threshold:g}): "
            "the area under each step curve is its AP (VOC2010+)"
        )
        return {"pr_curve": pr_curve_figure(curves, title)}

    def tables(self) -> dict[str, list[Row]]:
        """``{"pr_curve": rows}`` of the last ``compute()``: ``["class", "recall", "precision"]``, then the corners
        of each class's envelope; ``precision`` holds on recall from the previous row's (exclusive) to the row's
        own, so the sum of (recall - previous recall) * precision over a class's rows is its ``ap/<class>``."""
        curves = self.curves()
        return {"pr_curve": pr_curve_table(curves)} if curves else {}
