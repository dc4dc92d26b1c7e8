"""COCO box mAP through pycocotools, the reference implementation.

``COCOEvaluator`` collects a model's predictions (xyxy boxes in original pixels, contiguous labels) as COCO
results (xywh, original category ids) and runs ``COCOeval`` on the images it has seen; crowd regions of the
ground truth are ignore regions, as pycocotools treats them. ``evaluate_results_file`` scores a results file
written by ``COCOEvaluator.write_results`` (or by any other detector) against an annotations file.

Both also give the AP of each category (``ap/<name>``) and keep ``COCOeval``'s precision array, from the same
``COCOeval`` run as the twelve stats, for the per-category precision-recall curves of ``figures()`` and
``tables()`` (:mod:`mobiletasks.evaluation.plots`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params
from torch import Tensor

from mobiletasks.common import PathLike

from .coco_json import ImageId, complete_dataset, describe, id_order, is_image_id, is_number, read_json, read_results
from .distributed import gather
from .plots import Curve, Row, pr_curve_figure, pr_curve_table, unique_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# the twelve numbers of COCOeval.stats, in its order
STAT_NAMES: tuple[str, ...] = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
# what each of them is, in COCOeval.summarize's words
STAT_DESCRIPTIONS: dict[str, str] = {
    "map": "AP @ IoU=0.50:0.95 area=all    maxDets=100",
    "map_50": "AP @ IoU=0.50      area=all    maxDets=100",
    "map_75": "AP @ IoU=0.75      area=all    maxDets=100",
    "map_small": "AP @ IoU=0.50:0.95 area=small  maxDets=100",
    "map_medium": "AP @ IoU=0.50:0.95 area=medium maxDets=100",
    "map_large": "AP @ IoU=0.50:0.95 area=large  maxDets=100",
    "mar_1": "AR @ IoU=0.50:0.95 area=all    maxDets=1",
    "mar_10": "AR @ IoU=0.50:0.95 area=all    maxDets=10",
    "mar_100": "AR @ IoU=0.50:0.95 area=all    maxDets=100",
    "mar_small": "AR @ IoU=0.50:0.95 area=small  maxDets=100",
    "mar_medium": "AR @ IoU=0.50:0.95 area=medium maxDets=100",
    "mar_large": "AR @ IoU=0.50:0.95 area=large  maxDets=100",
}
_BOX_DECIMALS = 2  # as the COCO annotations
_SCORE_DECIMALS = 5


def load_coco(path: PathLike) -> COCO:
    """A pycocotools ``COCO`` index of an annotations file, completed and checked as
    :func:`~mobiletasks.evaluation.coco_json.complete_dataset` says, without pycocotools' prints."""
    return index_coco(complete_dataset(read_json(path, "annotations"), path))


def index_coco(dataset: dict[str, Any]) -> COCO:
    """A ``COCO`` index of a (complete) annotation dict."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def completed(coco: COCO) -> COCO:
    """``coco`` itself when pycocotools can evaluate on it, else a completed copy (a user's own ``COCO`` index)."""
    anns = coco.dataset.get("annotations", [])
    ids = [a.get("id") for a in anns]
    complete = (
        isinstance(coco.dataset.get("info"), dict)
        and isinstance(coco.dataset.get("licenses"), list)
        and all("area" in a and "iscrowd" in a for a in anns)
        and all(isinstance(i, int) and i > 0 for i in ids)
        and len(set(ids)) == len(ids)
    )
    return coco if complete else index_coco(complete_dataset(dict(coco.dataset), "the COCO index passed in"))


# what the per-category ``ap/<name>`` is, in COCOeval.summarize's words (its first stat, for one category)
CATEGORY_AP_DESCRIPTION = "AP @ IoU=0.50:0.95 area=all    maxDets=100"


@dataclass(frozen=True)
class COCOEvaluation:
    """The outcome of one ``COCOeval`` run (boxes): the twelve stats, the printed summary and the precision array
    behind the per-category APs and precision-recall curves.

    Attributes:
        stats: the twelve ``COCOeval.stats`` under ``STAT_NAMES``.
        summary: the text ``COCOeval.summarize`` prints (or a sentence when it did not run).
        category_ids: the ``K`` category ids of the ground truth, sorted: pycocotools' order of the category axis.
        category_names: their names, made unique by appending ``_<id>`` to a name two categories share.
        precision: float64 [T=10, R=101, K]: ``COCOeval.eval["precision"]`` at area "all" and maxDets 100, the
            interpolated precision per IoU threshold, recall threshold and category; -1 for a category without a
            (non-crowd) ground-truth box among the images scored. None when no image scored has any.
        iou_thresholds: [T] float64, 0.50, 0.55, ..., 0.95 (``params.iouThrs``).
        recall_thresholds: [R] float64, 0.00, 0.01, ..., 1.00 (``params.recThrs``).
    """

    stats: dict[str, float]
    summary: str
    category_ids: list[int]
    category_names: list[str]
    precision: npt.NDArray[np.float64] | None
    iou_thresholds: npt.NDArray[np.float64]
    recall_thresholds: npt.NDArray[np.float64]

    def category_aps(self) -> dict[str, float]:
        """``ap/<name>`` of every category with ground truth: AP @ IoU=0.50:0.95, area all, maxDets 100, the mean
        of its precision entries that are defined (> -1), as ``COCOeval.summarize`` computes ``map`` over all
        categories (and torchmetrics' ``MeanAveragePrecision(class_metrics=True)`` its ``map_per_class``).
        Categories without ground truth are left out."""
        if self.precision is None:
            return {}
        aps = {}
        for k, name in enumerate(self.category_names):
            precision = self.precision[:, :, k]
            defined = precision[precision > -1]
            if defined.size:
                aps[f"ap/{name}"] = float(np.mean(defined))
        return aps

    def metrics(self) -> dict[str, float]:
        """The twelve stats, then ``ap/<name>`` per category with ground truth (:meth:`category_aps`)."""
        return {**self.stats, **self.category_aps()}

    def curves(self) -> list[Curve]:
        """Per category with ground truth, the precision at each of the 101 recall thresholds averaged over the ten
        IoU thresholds (its mean over the recall thresholds is the category's AP), with the IoU=0.50 curve as the
        dashed one."""
        if self.precision is None:
            return []
        at_50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        curves = []
        for k, name in enumerate(self.category_names):
            precision = self.precision[:, :, k]
            if not (precision > -1).any():
                continue
            curves.append(
                Curve(
                    name,
                    self.recall_thresholds,
                    precision.mean(axis=0),
                    float(np.mean(precision[precision > -1])),
                    dashed=(self.recall_thresholds, precision[at_50]),
                )
            )
        return curves

    def figures(self) -> dict[str, Figure]:
        """``{"pr_curve": Figure}``: one panel per category with ground truth (:meth:`curves`), or ``{}`` when no
        category has any."""
        curves = self.curves()
        if not curves:
            return {}
        title = (
            "COCO precision-recall per category (area all, 100 detections): solid = mean over IoU 0.50:0.95 "
            "(its mean is the AP), dashed = IoU 0.50"
        )
        return {"pr_curve": pr_curve_figure(curves, title)}

    def tables(self) -> dict[str, list[Row]]:
        """``{"pr_curve": rows}``: header ``["class", "recall", "precision"]``, then for each category with ground
        truth its 101 points of the mean-over-IoU curve (their mean is ``ap/<class>``); ``{}`` when none has any."""
        curves = self.curves()
        return {"pr_curve": pr_curve_table(curves)} if curves else {}


def _category_names(coco_gt: COCO, category_ids: Sequence[int]) -> list[str]:
    names = [str(coco_gt.cats[c].get("name", c)) for c in category_ids]
    return unique_names(names, category_ids)


def run_cocoeval(
    coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[ImageId] | None = None
) -> COCOEvaluation:
    """``COCOeval`` (boxes) of ``results`` on ``image_ids`` (default: all images of ``coco_gt``), run once.

    Returns the twelve stats under ``STAT_NAMES``, the text ``COCOeval.summarize`` prints and the precision
    array at area "all", maxDets 100 (:class:`COCOEvaluation`). Without any ground-truth box among the images
    every stat is -1, undefined, as pycocotools reports it (and a warning says so), and there is no precision
    array; else no results at all gives zeros (pycocotools' ``loadRes`` cannot take an empty list), and the
    precision pycocotools would give: 0 for each category with ground truth, -1 for the others.
    ``results`` are modified in place by ``loadRes`` (it adds area, id, iscrowd): pass fresh dicts.
    """
    params = Params(iouType="bbox")
    category_ids = sorted(coco_gt.getCatIds())
    names = _category_names(coco_gt, category_ids)

    def outcome(stats: dict[str, float], summary: str, precision: npt.NDArray[np.float64] | None) -> COCOEvaluation:
        return COCOEvaluation(
            stats,
            summary,
            category_ids,
            names,
            precision,
            np.asarray(params.iouThrs, dtype=np.float64),
            np.asarray(params.recThrs, dtype=np.float64),
        )

    scored = None if image_ids is None else set(image_ids)
    boxes = [
        a
        for a in coco_gt.dataset["annotations"]
        if not a.get("iscrowd") and (scored is None or a["image_id"] in scored)
    ]
    if not boxes:
        count = len(coco_gt.imgs) if scored is None else len(scored)
        undefined = (
            f"no ground-truth box among the {count} images scored: every stat is -1 (undefined), as pycocotools says"
        )
        log.warning(undefined)
        return outcome(dict.fromkeys(STAT_NAMES, -1.0), undefined + "\n", None)
    if not results:
        with_boxes = {a["category_id"] for a in boxes}
        precision = np.full((len(params.iouThrs), len(params.recThrs), len(category_ids)), -1.0)
        precision[:, :, [k for k, c in enumerate(category_ids) if c in with_boxes]] = 0.0
        return outcome(dict.fromkeys(STAT_NAMES, 0.0), "no detections: every stat is 0\n", precision)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            coco_eval.params.imgIds = sorted(image_ids, key=id_order)
        coco_eval.evaluate()
        coco_eval.accumulate()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        coco_eval.summarize()
    p = coco_eval.params  # its catIds default to sorted(coco_gt.getCatIds()): category_ids
    area, max_dets = list(p.areaRngLbl).index("all"), list(p.maxDets).index(100)
    precision = np.asarray(coco_eval.eval["precision"][:, :, :, area, max_dets], dtype=np.float64).copy()
    stats = dict(zip(STAT_NAMES, (float(s) for s in coco_eval.stats), strict=True))
    return outcome(stats, text.getvalue(), precision)


class COCOEvaluator:
    """COCO box mAP of a detector's predictions, computed by pycocotools on the images seen.

    Args:
        coco_gt: the ground truth, a ``COCO`` index or the path of an annotations json.
        category_ids: ``category_ids[label]`` is the COCO category id of contiguous label ``label``
            (default: the sorted category ids of ``coco_gt``, the order the data modules number them in).

    ``update(preds, targets)`` takes per image a prediction dict (``boxes`` xyxy in original pixels,
    ``scores``, ``labels``) and a target dict with the COCO ``image_id``; an image seen again replaces its
    earlier detections. ``compute()`` returns the twelve ``COCOeval.stats`` under ``STAT_NAMES`` (``map``,
    ``map_50``, ...) over the seen images only, then ``ap/<name>`` (AP @ IoU=0.50:0.95 of each category that has
    ground truth among them), keeps pycocotools' printed table in ``summary`` and the whole outcome, precision
    array included, in ``evaluation`` (:class:`COCOEvaluation`). ``figures()`` and ``tables()`` then give the
    per-category precision-recall curves under ``"pr_curve"``.

    Example:
        >>> import torch
        >>> gt = COCO()
        >>> gt.dataset = {"images": [{"id": 7, "width": 64, "height": 48}], "categories": [{"id": 3, "name": "car"}],
        ...     "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [8, 8, 20, 10], "area": 200,
        ...     "iscrowd": 0}]}
        >>> gt.createIndex()
        creating index...
        index created!
        >>> evaluator = COCOEvaluator(gt)
        >>> pred = {"boxes": torch.tensor([[8.0, 8.0, 28.0, 18.0]]), "scores": torch.tensor([0.9]),
        ...     "labels": torch.tensor([0])}
        >>> evaluator.update([pred], [{"image_id": 7}])
        >>> evaluator.results()
        [{'image_id': 7, 'category_id': 3, 'bbox': [8.0, 8.0, 20.0, 10.0], 'score': 0.9}]
        >>> metrics = evaluator.compute()
        >>> round(metrics["map"], 6), round(metrics["ap/car"], 6)  # pycocotools' precision is tp / (tp + fp + eps)
        (1.0, 1.0)
        >>> table = evaluator.tables()["pr_curve"]
        >>> sorted(evaluator.figures()), table[0], len(table)  # the header, then 101 recall points of "car"
        (['pr_curve'], ['class', 'recall', 'precision'], 102)
    """

    def __init__(self, coco_gt: COCO | PathLike, category_ids: Sequence[int] | None = None) -> None:
        self.coco_gt = completed(coco_gt) if isinstance(coco_gt, COCO) else load_coco(coco_gt)
        known = sorted(self.coco_gt.getCatIds())
        if category_ids is None:
            category_ids = known
        unknown = sorted(set(category_ids) - set(known))
        if unknown:
            raise ValueError(
                f"category_ids {unknown} are not categories of the ground truth (its ids: {known}); "
                "pass the COCO category id of each contiguous label"
            )
        self.category_ids = torch.tensor(list(category_ids), dtype=torch.int64)
        self.summary = ""
        self.evaluation: COCOEvaluation | None = None  # of the last compute()
        # image id -> (category ids [M], xywh boxes [M, 4] float64, scores [M] float64)
        self._detections: dict[ImageId, tuple[Tensor, Tensor, Tensor]] = {}

    def reset(self) -> None:
        """Forget every image seen (and the last ``compute()``)."""
        self._detections = {}
        self.summary = ""
        self.evaluation = None

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Any]]) -> None:
        """Add one batch: a prediction dict and a target dict (with ``image_id``) per image."""
        if len(preds) != len(targets):
            raise ValueError(f"update got {len(preds)} predictions and {len(targets)} targets; pass one per image")
        num_classes = len(self.category_ids)
        for pred, target in zip(preds, targets, strict=True):
            image_id = target["image_id"]
            if isinstance(image_id, Tensor):
                image_id = int(image_id)
            if image_id not in self.coco_gt.imgs:
                raise ValueError(
                    f"image_id {describe(image_id)} is not an image of the ground truth; targets must carry the "
                    "COCO image id of the annotations file, of the same type (an int or a str)"
                )
            boxes = pred["boxes"].detach().to("cpu", torch.float64).reshape(-1, 4)
            labels = pred["labels"].detach().to("cpu", torch.int64).reshape(-1)
            scores = pred["scores"].detach().to("cpu", torch.float64).reshape(-1)
            if not len(boxes) == len(labels) == len(scores):
                raise ValueError(
                    f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores; "
                    "a prediction needs one label and one score per box"
                )
            inverted = (boxes[:, 2:] < boxes[:, :2]).any(dim=1)
            if bool(inverted.any()):
                raise ValueError(
                    f"image {describe(image_id)}: {int(inverted.sum())} predicted boxes have x2 < x1 or y2 < y1 "
                    f"(e.g. {boxes[inverted][0].tolist()}); pass boxes as xyxy pixels, corners in that order"
                )
            bad = labels[(labels < 0) | (labels >= num_classes)]
            if len(bad):
                raise ValueError(
                    f"image {image_id}: label {int(bad[0])} is not in 0..{num_classes - 1}; "
                    f"labels are contiguous indices into the {num_classes} category_ids"
                )
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
            self._detections[image_id] = (self.category_ids[labels], xywh, scores)

    def results(self) -> list[dict[str, Any]]:
        """The detections in COCO results format: image_id, category_id, bbox (xywh, rounded), score."""
        if not self._detections:
            return []
        image_ids = [i for i, (c, _, _) in self._detections.items() for i in [i] * len(c)]
        category_ids = torch.cat([c for c, _, _ in self._detections.values()]).tolist()
        boxes = torch.cat([b for _, b, _ in self._detections.values()]).round(decimals=_BOX_DECIMALS).tolist()
        scores = torch.cat([s for _, _, s in self._detections.values()]).round(decimals=_SCORE_DECIMALS).tolist()
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(image_ids, category_ids, boxes, scores, strict=True)
        ]

    def write_results(self, path: PathLike) -> None:
        """Write ``results()`` as a json file that ``mobiletasks evaluate`` (or pycocotools) reads."""
        Path(path).write_text(json.dumps(self.results()))

    def compute(self) -> dict[str, float]:
        """The twelve COCO stats over the images seen (all 0.0 when there is no detection at all), then
        ``ap/<name>`` per category with ground truth there; under ``torch.distributed`` the images of every
        process, whose detections are gathered here first (so that ``results()``, ``figures()`` and ``tables()``
        then cover them all, on every process). Every process must call it."""
        for detections in gather(self._detections):
            self._detections.update(detections)
        self.evaluation = run_cocoeval(self.coco_gt, self.results(), list(self._detections))
        self.summary = self.evaluation.summary
        return self.evaluation.metrics()

    def _computed(self) -> COCOEvaluation:
        if self.evaluation is None:
            raise RuntimeError("figures() and tables() show what compute() found: call compute() first")
        return self.evaluation

    def figures(self) -> dict[str, Figure]:
        """``{"pr_curve": Figure}`` of the last ``compute()``: per category with ground truth, precision against
        the 101 recall thresholds, averaged over the ten IoU thresholds (solid) and at IoU 0.50 (dashed); ``{}``
        when no category has ground truth among the images seen. ``RuntimeError`` before ``compute()``."""
        return self._computed().figures()

    def tables(self) -> dict[str, list[Row]]:
        """``{"pr_curve": rows}`` of the last ``compute()``: ``["class", "recall", "precision"]``, then the 101
        points of each category's mean-over-IoU curve, whose mean is its ``ap/<class>``; ``{}`` as ``figures()``."""
        return self._computed().tables()


def evaluate_results(annotations: PathLike, results: PathLike) -> COCOEvaluation:
    """``COCOeval`` of a results file on every image of the annotations file (as pycocotools does), run once:
    the twelve stats, per-category APs and precision-recall curves (:class:`COCOEvaluation`).

    Images without any result count as missed. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not json, or results that name an image or category the annotations
    do not have.
    """
    coco_gt = load_coco(annotations)
    anns = read_results(results)
    for key, known in (("image_id", coco_gt.imgs), ("category_id", coco_gt.cats)):
        values = [ann[key] for ann in anns]
        bad = [v for v in values if not is_image_id(v)] if key == "image_id" else []
        bad += [v for v in values if not isinstance(v, str) and not is_number(v)]
        unknown = bad or [v for v in dict.fromkeys(values) if v not in known]
        if unknown:
            example = next(iter(known), None)
            raise ValueError(
                f"results file {results} names {key} {describe(unknown[0])}"
                f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}, which annotations file "
                f"{annotations} does not have (its {key}s are like {describe(example)}); evaluate the results "
                "against the annotations of the same split, with ids of the same type"
            )
    if not anns:
        log.warning("results file %s holds no detection: every stat is 0", results)
    return run_cocoeval(coco_gt, anns)


def evaluate_results_file(annotations: PathLike, results: PathLike) -> dict[str, float]:
    """The twelve COCO stats of a results file, on every image of the annotations file (as pycocotools does),
    then ``ap/<name>`` per category with ground truth: :func:`evaluate_results`'s ``metrics()``. Errors as there."""
    return evaluate_results(annotations, results).metrics()
