"""``VOCEvaluator``: a case worked by hand, voc128's annotations, and a port of the VOC devkit's code."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from data_trees import DataTrees
from torch import Tensor

from mobiletasks.evaluation.voc import VOCEvaluator, average_precision

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def read_voc_annotation(path: Path) -> dict[str, Tensor]:
    """A VOC xml as a target: 1-based inclusive (xmin, ymin, xmax, ymax) -> continuous (xmin-1, ymin-1, xmax, ymax)."""
    boxes, labels, difficult = [], [], []
    for obj in ET.parse(path).getroot().iter("object"):
        box = obj.find("bndbox")
        assert box is not None
        xmin, ymin, xmax, ymax = (float(box.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(VOC_CLASSES.index(obj.findtext("name", "")))
        difficult.append(obj.findtext("difficult") == "1")
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


def read_voc_annotations(trees: DataTrees) -> list[dict[str, Tensor]]:
    return [read_voc_annotation(p) for p in sorted((trees.voc128 / "VOC2012" / "Annotations").glob("*.xml"))]


@pytest.fixture(scope="module")
def voc_targets(trees: DataTrees) -> list[dict[str, Tensor]]:
    """Every voc128 annotation (real, or the stand-in's)."""
    return read_voc_annotations(trees)


def ground_truth_predictions(targets: list[dict[str, Tensor]], keep_difficult: bool) -> list[dict[str, Tensor]]:
    preds = []
    for t in targets:
        keep = torch.ones_like(t["difficult"]) if keep_difficult else ~t["difficult"]
        preds.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep], "scores": torch.ones(int(keep.sum()))})
    return preds


def prediction(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_hand_computed_case() -> None:
    """Two images, classes cat (0), dog (1), bird (2, no ground truth); every AP worked out below."""
    targets = [
        {  # image 0: cat a, cat b (difficult), dog c
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]]),
            "labels": torch.tensor([0, 0, 1]),
            "difficult": torch.tensor([False, True, False]),
        },
        {  # image 1: cat d, cat e, dog f (no difficult flags: none is)
            "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 20, 20]]),
            "labels": torch.tensor([0, 0, 1]),
        },
    ]
    preds = [
        prediction(  # given out of score order on purpose
            [[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10], [0, 20, 10, 30], [0, 0, 10, 10], [5, 5, 9, 9]],
            [0.7, 0.8, 0.9, 0.99, 0.95, 0.2],
            [0, 0, 0, 1, 1, 2],
        ),
        prediction(
            [[0, 0, 10, 5], [100, 100, 110, 110], [50, 50, 60, 60], [0, 0, 10, 10], [0, 0, 20, 20]],
            [0.6, 0.5, 0.4, 0.45, 0.3],
            [0, 0, 0, 1, 1],
        ),
    ]
    # cat, 3 positives (a, d, e; b is difficult). Ranked:
    #   0.9  img0 on a          IoU 1               TP
    #   0.8  img0 on b          difficult           ignored (neither TP nor FP)
    #   0.7  img0 on a again    duplicate           FP
    #   0.6  img1 (0,0,10,5)    IoU 50/100 = 0.5 >= 0.5 with d   TP
    #   0.5  img1 far away      IoU 0               FP
    #   0.4  img1 on e          IoU 1               TP
    # TP/FP: T F T F T -> recall 1/3 1/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 3/5
    # envelope (max to the right): 1 2/3 2/3 3/5 3/5
    # area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 15/45 + 10/45 + 9/45 = 34/45
    # 11-point: t = 0, .1, .2, .3 -> 1 (4 points); t = .4, .5, .6 -> 2/3 (3); t = .7 .. 1 -> 3/5 (4)
    #           (4 + 2 + 12/5) / 11 = 42/55
    # dog, 2 positives (c, f). Ranked:
    #   0.99 img0 on c          TP
    #   0.95 img0 on cat a      IoU 1 but with a cat: no dog box overlaps -> FP
    #   0.45 img1 (0,0,10,10)   IoU 100/400 = 0.25 with f -> FP
    #   0.3  img1 on f          TP
    # TP/FP: T F F T -> recall 1/2 1/2 1/2 1, precision 1 1/2 1/3 1/2; envelope 1 1/2 1/2 1/2
    # area: 1/2 * 1 + 1/2 * 1/2 = 3/4
    # 11-point: t = 0 .. .5 -> 1 (6 points); t = .6 .. 1 -> 1/2 (5): (6 + 5/2) / 11 = 17/22
    # bird: no ground truth -> no AP (-1, "missing"), left out of the means
    evaluator = VOCEvaluator(["cat", "dog", "bird"])
    evaluator.update(preds[:1], targets[:1])
    evaluator.update(preds[1:], targets[1:])
    result = evaluator.compute()
    assert result.keys() == {"map", "map_07", "classes_missing", "ap/cat", "ap/dog", "ap/bird"}
    assert result["ap/bird"] == -1.0 and result["classes_missing"] == 1.0
    assert result["ap/cat"] == pytest.approx(34 / 45, abs=1e-12)
    assert result["ap/dog"] == pytest.approx(3 / 4, abs=1e-12)
    assert result["map"] == pytest.approx((34 / 45 + 3 / 4) / 2, abs=1e-12)
    assert result["map_07"] == pytest.approx((42 / 55 + 17 / 22) / 2, abs=1e-12)
    # a stricter threshold: the cat at IoU 0.5 becomes FP and d is never found -> T F F F T,
    # recall 1/3 1/3 1/3 1/3 2/3, precision 1 1/2 1/3 1/4 2/5: area 1/3 * 1 + 1/3 * 2/5 = 7/15
    strict = VOCEvaluator(["cat", "dog", "bird"], iou_threshold=0.6)
    strict.update(preds, targets)
    assert strict.compute()["ap/cat"] == pytest.approx(7 / 15, abs=1e-12)


def test_average_precision_edge_cases() -> None:
    assert average_precision(torch.zeros(0), torch.zeros(0, dtype=torch.bool), 3) == 0.0
    assert average_precision(torch.tensor([0.3, 0.9]), torch.tensor([True, True]), 2) == 1.0
    # half the positives found, at precision 1: area 1/2; 11-point: t = 0 .. .5 -> 6/11
    assert average_precision(torch.tensor([0.5]), torch.tensor([True]), 2) == 0.5
    assert average_precision(torch.tensor([0.5]), torch.tensor([True]), 2, use_07_metric=True) == pytest.approx(6 / 11)
    # recall exactly 3/10 reaches the threshold 0.3 (np.arange(0, 1.1, 0.1) would give 0.30000000000000004)
    tp = torch.tensor([True] * 3 + [False] * 7)
    assert average_precision(torch.linspace(1, 0, 10), tp, 10, use_07_metric=True) == pytest.approx(4 / 11)
    with pytest.raises(ValueError, match="num_gt is 0"):
        average_precision(torch.tensor([0.5]), torch.tensor([True]), 0)


def test_no_detections_give_zero() -> None:
    evaluator = VOCEvaluator(["cat"])
    nothing = {"map": 0.0, "map_07": 0.0, "classes_missing": 1.0, "ap/cat": -1.0}
    assert evaluator.compute() == nothing
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    evaluator.update([prediction([], [], [])], [target])
    assert evaluator.compute() == {"map": 0.0, "map_07": 0.0, "classes_missing": 0.0, "ap/cat": 0.0}
    evaluator.reset()
    assert evaluator.compute() == nothing


def test_input_errors() -> None:
    with pytest.raises(ValueError, match=r"iou_threshold is 0; it must be in \(0, 1\]"):
        VOCEvaluator(["cat"], iou_threshold=0)
    evaluator = VOCEvaluator(["cat", "dog"])
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"a prediction has label 2, not in 0\.\.1"):
        evaluator.update([prediction([[0, 0, 1, 1]], [0.5], [2])], [target])
    with pytest.raises(ValueError, match=r"a target has label -1"):
        evaluator.update([prediction([], [], [])], [{**target, "labels": torch.tensor([-1])}])
    with pytest.raises(ValueError, match=r"1 boxes, 2 labels"):
        evaluator.update([prediction([], [], [])], [{**target, "labels": torch.tensor([0, 1])}])
    with pytest.raises(ValueError, match=r"2 predictions and 1 targets"):
        evaluator.update([prediction([], [], []), prediction([], [], [])], [target])


@pytest.mark.parametrize("keep_difficult", [True, False])
def test_ground_truth_as_detections_is_perfect(voc_targets: list[dict[str, Tensor]], keep_difficult: bool) -> None:
    """With or without detections on the difficult boxes: they are neither found nor missed."""
    assert sum(int(t["difficult"].sum()) for t in voc_targets) > 0, "voc128 has difficult objects"
    evaluator = VOCEvaluator(VOC_CLASSES)
    evaluator.update(ground_truth_predictions(voc_targets, keep_difficult), voc_targets)
    result = evaluator.compute()
    assert result["map"] == 1.0 and result["map_07"] == 1.0
    present = {VOC_CLASSES[int(c)] for t in voc_targets for c in t["labels"][~t["difficult"]]}
    assert {k.removeprefix("ap/") for k, v in result.items() if k.startswith("ap/") and v >= 0} == present
    assert result["ap/cow"] == -1.0  # voc128 has no cow: no AP (the devkit would give NaN), shown as missing
    assert result["classes_missing"] == len(VOC_CLASSES) - len(present)


def test_difficult_boxes_are_not_positives(voc_targets: list[dict[str, Tensor]]) -> None:
    """Control for the test above: flagged as ordinary boxes, difficult objects without detections are misses."""
    evaluator = VOCEvaluator(VOC_CLASSES)
    plain = [{**t, "difficult": torch.zeros_like(t["difficult"])} for t in voc_targets]
    evaluator.update(ground_truth_predictions(voc_targets, keep_difficult=False), plain)
    assert evaluator.compute()["map"] < 0.99


def test_duplicate_detection_lowers_precision(both_trees: DataTrees) -> None:
    """Person boxes ranked one after another, and a copy of the first just below it.

    Ranked: TP, FP (the copy), TP, ..., TP: precision 1, 1/2, 2/3, ..., n/(n+1) over n positives. The envelope
    is 1 up to recall 1/n, then n/(n+1): area 1/n + (n-1)/n * n/(n+1) = 1/n + (n-1)/(n+1). The 11-point AP
    takes 1 for the thresholds t <= 1/n (floor(10/n) + 1 of them) and n/(n+1) for the others.
    """
    voc_targets = read_voc_annotations(both_trees)
    person = VOC_CLASSES.index("person")
    preds = ground_truth_predictions(voc_targets, keep_difficult=False)
    n = sum(int((p["labels"] == person).sum()) for p in preds)
    rank = 0
    for p in preds:  # scores 1, 1 - 1/(n+1), ... in the order of the images, then of the boxes
        is_person = p["labels"] == person
        p["scores"][is_person] = 1 - torch.arange(rank, rank + int(is_person.sum()), dtype=torch.float32) / (n + 1)
        rank += int(is_person.sum())
    first = next(i for i, p in enumerate(preds) if (p["labels"] == person).any())
    j = int((preds[first]["labels"] == person).nonzero()[0])
    copy = {k: v[j : j + 1] for k, v in preds[first].items()}
    copy["scores"] = copy["scores"] - 0.5 / (n + 1)
    preds[first] = {k: torch.cat([v, copy[k]]) for k, v in preds[first].items()}
    evaluator = VOCEvaluator(VOC_CLASSES)
    evaluator.update(preds, voc_targets)
    result = evaluator.compute()
    assert n > (100 if both_trees.real else 20)  # the stand-in has 31
    assert result["ap/person"] == pytest.approx(1 / n + (n - 1) / (n + 1), abs=1e-12)
    others = [v for k, v in result.items() if k.startswith("ap/") and k != "ap/person" and v >= 0]
    assert others and all(v == 1.0 for v in others)
    ones = 10 // n + 1
    person_07 = (ones + (11 - ones) * n / (n + 1)) / 11
    assert result["map_07"] == pytest.approx((person_07 + len(others)) / (len(others) + 1), abs=1e-12)


# --- a port of the devkit's evaluation: VOCevaldet.m's loop over ranked detections and VOCap.m ----------------


def devkit_ap(
    targets: list[dict[str, Tensor]], preds: list[dict[str, Tensor]], label: int, use_07_metric: bool
) -> float:
    """Line by line after py-faster-rcnn's voc_eval.py, on the devkit's 1-based boxes with its "+1" widths.

    Two details follow the MATLAB devkit rather than voc_eval.py: a match needs ``ovmax >= 0.5`` (VOCevaldet.m),
    and the 11 recall thresholds are exactly k/10 (``np.arange(0, 1.1, 0.1)`` holds 0.30000000000000004).
    """
    gt = []
    for t in targets:
        mine = (t["labels"] == label).numpy()
        boxes = t["boxes"].double().numpy()[mine] + np.array([1.0, 1.0, 0.0, 0.0])  # back to the xml's numbers
        gt.append({"bbox": boxes, "difficult": t["difficult"].numpy()[mine], "det": np.zeros(mine.sum(), bool)})
    npos = sum(int((~g["difficult"]).sum()) for g in gt)
    image_ids, confidence, bbs = [], [], []
    for i, p in enumerate(preds):
        mine = (p["labels"] == label).numpy()
        image_ids += [i] * int(mine.sum())
        confidence += p["scores"].double().numpy()[mine].tolist()
        bbs += (p["boxes"].double().numpy()[mine] + np.array([1.0, 1.0, 0.0, 0.0])).tolist()
    order = np.argsort(-np.array(confidence), kind="stable")
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, k in enumerate(order):
        r, bb = gt[image_ids[k]], np.array(bbs[k])
        ovmax, bbgt = -np.inf, r["bbox"]
        if bbgt.size > 0:
            ixmin, iymin = np.maximum(bbgt[:, 0], bb[0]), np.maximum(bbgt[:, 1], bb[1])
            ixmax, iymax = np.minimum(bbgt[:, 2], bb[2]), np.minimum(bbgt[:, 3], bb[3])
            iw, ih = np.maximum(ixmax - ixmin + 1.0, 0.0), np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
        if ovmax >= 0.5:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d], r["det"][jmax] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in [k / 10 for k in range(11)]:
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def perturbed_predictions(targets: list[dict[str, Tensor]], seed: int = 0) -> list[dict[str, Tensor]]:
    """GT boxes (difficult ones too) jittered, some dropped, some doubled, random false positives and scores."""
    g = torch.Generator().manual_seed(seed)
    preds = []
    for t in targets:
        boxes, labels = t["boxes"], t["labels"]
        doubled = torch.rand(len(boxes), generator=g) < 0.1
        boxes, labels = torch.cat([boxes, boxes[doubled]]), torch.cat([labels, labels[doubled]])
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        boxes = boxes + torch.randn(boxes.shape, generator=g) * 0.15 * size
        keep = torch.rand(len(boxes), generator=g) > 0.15
        n_fp = int(torch.randint(3, (1,), generator=g))
        fp_xy = torch.rand(n_fp, 2, generator=g) * 400
        fp_boxes = torch.cat([fp_xy, fp_xy + 10 + torch.rand(n_fp, 2, generator=g) * 200], 1)
        fp_labels = torch.randint(len(VOC_CLASSES), (n_fp,), generator=g)
        boxes, labels = torch.cat([boxes[keep], fp_boxes]), torch.cat([labels[keep], fp_labels])
        preds.append({"boxes": boxes, "labels": labels, "scores": torch.rand(len(boxes), generator=g)})
    return preds


def test_equals_devkit_port_on_perturbed_detections(voc_targets: list[dict[str, Tensor]]) -> None:
    preds = perturbed_predictions(voc_targets)
    evaluator = VOCEvaluator(VOC_CLASSES)
    for i in range(0, len(preds), 32):  # in batches, as during validation
        evaluator.update(preds[i : i + 32], voc_targets[i : i + 32])
    result = evaluator.compute()
    assert 0.2 < result["map"] < 0.9  # a realistic mix, not a degenerate case
    for label, name in enumerate(VOC_CLASSES):
        if result[f"ap/{name}"] == -1.0:
            assert not any((t["labels"][~t["difficult"]] == label).any() for t in voc_targets)
            continue
        assert result[f"ap/{name}"] == pytest.approx(devkit_ap(voc_targets, preds, label, False), abs=1e-12), name
    aps_07 = [devkit_ap(voc_targets, preds, c, True) for c, name in enumerate(VOC_CLASSES) if result[f"ap/{name}"] >= 0]
    assert result["map_07"] == pytest.approx(sum(aps_07) / len(aps_07), abs=1e-12)
