"""``COCOEvaluator`` and ``evaluate_results_file`` against pycocotools, on coco128's annotations."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from data_trees import current
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mobiletasks.evaluation.coco import STAT_NAMES, COCOEvaluator, evaluate_results_file, load_coco

requires_coco128 = pytest.mark.usefixtures("trees")  # coco128: the real files, or their synthetic stand-in
SPLITS = ["train2017", "val2017"]


def annotations_file(split: str) -> Path:
    return current().coco128 / "annotations" / f"instances_{split}.json"


def pycocotools_stats(
    annotations: Path | COCO, results: Path | list[dict[str, Any]], per_category: bool = True
) -> dict[str, float]:
    """The reference: pycocotools run as its README shows (on every image of the annotations); with
    ``per_category``, then ``ap/<name>`` of each category with ground truth: the first stat of a separate COCOeval
    run restricted to that category (``params.catIds = [id]``, as torchmetrics' ``class_metrics`` does)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = annotations if isinstance(annotations, COCO) else COCO(str(annotations))
        coco_dt = coco_gt.loadRes(results if isinstance(results, list) else str(results))
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        stats = dict(zip(STAT_NAMES, coco_eval.stats.tolist(), strict=True))
        for category in sorted(coco_gt.getCatIds()) if per_category else []:
            one = COCOeval(coco_gt, coco_dt, "bbox")
            one.params.catIds = [category]
            one.evaluate()
            one.accumulate()
            one.summarize()
            if one.stats[0] > -1:  # -1: no ground truth of the category
                stats[f"ap/{coco_gt.cats[category]['name']}"] = float(one.stats[0])
    return stats


def perturbed_results(annotations: Path, seed: int = 0) -> list[dict[str, Any]]:
    """A plausible detector's output: GT boxes jittered, some dropped, random scores, false positives.

    Boxes are rounded to 2 decimals and scores to 3, so that they survive float32 tensors unchanged. Sorted
    by image id (stable), the order in which the tests feed ``COCOEvaluator``.
    """
    data = json.loads(annotations.read_text())
    g = torch.Generator().manual_seed(seed)
    anns = [a for a in data["annotations"] if not a["iscrowd"]]
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64)
    boxes += torch.randn(len(anns), 4, generator=g, dtype=torch.float64) * 0.1 * boxes[:, 2:].repeat(1, 2)
    boxes[:, 2:] = boxes[:, 2:].clamp(min=1.0)
    keep = (torch.rand(len(anns), generator=g) > 0.15).tolist()
    image_ids = [a["image_id"] for a in anns]
    category_ids = [a["category_id"] for a in anns]
    # false positives: random boxes of random categories in random images
    n_fp = 200
    images = data["images"]
    picks = torch.randint(len(images), (n_fp,), generator=g).tolist()
    cats = [c["id"] for c in data["categories"]]
    image_ids += [images[i]["id"] for i in picks]
    category_ids += [cats[i] for i in torch.randint(len(cats), (n_fp,), generator=g).tolist()]
    size = torch.tensor([[images[i]["width"], images[i]["height"]] for i in picks], dtype=torch.float64)
    xy = torch.rand(n_fp, 2, generator=g, dtype=torch.float64) * size * 0.7
    wh = torch.rand(n_fp, 2, generator=g, dtype=torch.float64) * size * 0.3 + 4
    boxes = torch.cat([boxes, torch.cat([xy, wh], 1)]).round(decimals=2)
    keep += [True] * n_fp
    scores = torch.rand(len(keep), generator=g, dtype=torch.float64).round(decimals=3).clamp(min=0.001)
    results = [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s, k in zip(image_ids, category_ids, boxes.tolist(), scores.tolist(), keep, strict=True)
        if k
    ]
    return sorted(results, key=lambda r: r["image_id"])


def as_batches(
    coco_gt: COCO, detections: list[dict[str, Any]], batch_size: int = 16
) -> list[tuple[list[dict[str, torch.Tensor]], list[dict[str, Any]]]]:
    """Model-style batches (xyxy float32 boxes, contiguous labels) over every image of ``coco_gt``, by id."""
    label_of = {cat: label for label, cat in enumerate(sorted(coco_gt.getCatIds()))}
    per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in sorted(coco_gt.getImgIds())}
    for det in detections:
        per_image[det["image_id"]].append(det)
    preds, targets = [], []
    for image_id, dets in per_image.items():
        xywh = torch.tensor([d["bbox"] for d in dets], dtype=torch.float64).reshape(-1, 4)
        preds.append(
            {
                "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float(),
                "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([label_of[d["category_id"]] for d in dets], dtype=torch.int64),
            }
        )
        targets.append({"image_id": torch.tensor(image_id)})  # a tensor, as a collated target may hold
    return [(preds[i : i + batch_size], targets[i : i + batch_size]) for i in range(0, len(preds), batch_size)]


def ground_truth_detections(coco_gt: COCO) -> list[dict[str, Any]]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in coco_gt.dataset["annotations"]
        if not a["iscrowd"]
    ]


def evaluate(evaluator: COCOEvaluator, detections: list[dict[str, Any]]) -> dict[str, float]:
    for preds, targets in as_batches(evaluator.coco_gt, detections):
        evaluator.update(preds, targets)
    return evaluator.compute()


def tiny_coco() -> COCO:
    """Two images, two categories with non-contiguous ids (5 and 9)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 100, "height": 80}],
        "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 9, "bbox": [50, 20, 40, 40], "area": 1600, "iscrowd": 0},
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def prediction(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


@requires_coco128
def test_stats_match_torchmetrics_by_name() -> None:
    """Our twelve stats, name by name, equal torchmetrics' MeanAveragePrecision (pycocotools backend)."""
    from torchmetrics.detection import MeanAveragePrecision

    coco_ours = load_coco(annotations_file("val2017"))
    ours = evaluate(COCOEvaluator(coco_ours), perturbed_results(annotations_file("val2017"), seed=3))
    metric = MeanAveragePrecision(box_format="xyxy", backend="pycocotools")
    label_of = {cat: label for label, cat in enumerate(sorted(coco_ours.getCatIds()))}
    for preds, targets in as_batches(coco_ours, perturbed_results(annotations_file("val2017"), seed=3)):
        gts = []
        for t in targets:
            anns = coco_ours.loadAnns(coco_ours.getAnnIds(imgIds=int(t["image_id"])))
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
            gts.append(
                {
                    "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float(),
                    "labels": torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64),
                    "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
                    "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
                }
            )
        metric.update(preds, gts)
    theirs = metric.compute()
    assert set(STAT_NAMES) <= set(theirs)
    # torchmetrics rebuilds the ground truth from float32 xyxy boxes, which moves a few IoUs across a
    # threshold (differences of about 3e-4); a stat under the wrong name would be off by far more
    for name in STAT_NAMES:
        assert ours[name] == pytest.approx(float(theirs[name]), abs=2e-3), name


@requires_coco128
@pytest.mark.parametrize("split", SPLITS)
def test_ground_truth_as_detections_is_perfect(split: str) -> None:
    """The non-crowd GT fed back (score 1) scores 1: crowd regions are not objects to find."""
    evaluator = COCOEvaluator(annotations_file(split))
    crowds = [a for a in evaluator.coco_gt.dataset["annotations"] if a["iscrowd"]]
    assert crowds, "coco128 has crowd regions in each split; without them this test checks less"
    stats = evaluate(evaluator, ground_truth_detections(evaluator.coco_gt))
    # not exactly 1: pycocotools' precision is tp / (tp + fp + eps), 1 - 2e-16 for a category with one box
    assert stats["map"] == pytest.approx(1.0, abs=1e-12)
    assert stats["map_50"] == pytest.approx(1.0, abs=1e-12)
    assert stats["mar_100"] == pytest.approx(1.0, abs=1e-12)
    assert "Average Precision" in evaluator.summary


@requires_coco128
def test_detection_on_crowd_region_is_ignored() -> None:
    coco_gt = load_coco(annotations_file("val2017"))
    crowd = next(a for a in coco_gt.dataset["annotations"] if a["iscrowd"])
    on_crowd = {"image_id": crowd["image_id"], "category_id": crowd["category_id"], "bbox": crowd["bbox"]}
    perfect = ground_truth_detections(coco_gt)
    stats = evaluate(COCOEvaluator(coco_gt), [*perfect, {**on_crowd, "score": 1.0}])
    assert stats["map"] == pytest.approx(1.0, abs=1e-12)
    # control: the same box as a category present in the split but not in that image is a false positive
    in_image = {a["category_id"] for a in coco_gt.imgToAnns[crowd["image_id"]]}
    other = next(c for c in sorted(coco_gt.catToImgs) if c not in in_image and coco_gt.catToImgs[c])
    stats = evaluate(COCOEvaluator(coco_gt), [*perfect, {**on_crowd, "category_id": other, "score": 1.0}])
    assert stats["map"] < 1.0 - 1e-6


@requires_coco128
@pytest.mark.parametrize("split", SPLITS)
def test_equals_pycocotools_on_perturbed_results(split: str, tmp_path: Path) -> None:
    annotations = annotations_file(split)
    detections = perturbed_results(annotations, seed=len(split))
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(detections))
    expected = pycocotools_stats(annotations, results_file)
    assert 0.2 < expected["map"] < 0.9  # a realistic mix of hits and misses, not a degenerate case
    assert len(expected) > len(STAT_NAMES) + 10  # the APs of the categories with ground truth follow the stats

    evaluator = COCOEvaluator(annotations)
    assert evaluate(evaluator, detections) == expected
    # the results round-trip: xyxy float32 tensors back to the same xywh json, in the same order
    assert evaluator.results() == detections
    evaluator.write_results(tmp_path / "written.json")
    assert json.loads((tmp_path / "written.json").read_text()) == detections
    assert pycocotools_stats(annotations, tmp_path / "written.json") == expected
    assert evaluate_results_file(annotations, results_file) == expected


@requires_coco128
def test_only_images_seen_are_evaluated() -> None:
    coco_gt = load_coco(annotations_file("val2017"))
    evaluator = COCOEvaluator(coco_gt)
    batches = as_batches(coco_gt, ground_truth_detections(coco_gt))
    for preds, targets in batches[: len(batches) // 2]:
        evaluator.update(preds, targets)
    assert evaluator.compute()["map"] == pytest.approx(1.0, abs=1e-12)
    # the same detections scored on every image miss the other half's objects
    assert pycocotools_stats(coco_gt, evaluator.results(), per_category=False)["map"] < 0.9


def test_empty_detections_give_zeros(tmp_path: Path) -> None:
    evaluator = COCOEvaluator(tiny_coco())
    assert evaluator.compute() == dict.fromkeys(STAT_NAMES, -1.0)  # nothing seen: undefined, as pycocotools says
    evaluator.update([prediction([], [], [])], [{"image_id": 1}])
    assert evaluator.results() == []
    # image 1 holds a cat (no dog): its AP is 0, as pycocotools gives a category with ground truth and no detection
    assert evaluator.compute() == {**dict.fromkeys(STAT_NAMES, 0.0), "ap/cat": 0.0}
    annotations, results = tmp_path / "gt.json", tmp_path / "results.json"
    annotations.write_text(json.dumps(tiny_coco().dataset))
    results.write_text("[]")
    assert evaluate_results_file(annotations, results) == {
        **dict.fromkeys(STAT_NAMES, 0.0),
        "ap/cat": 0.0,
        "ap/dog": 0.0,
    }


def test_category_ids_map_labels(tmp_path: Path) -> None:
    """Default: sorted ids (label 0 = id 5); an explicit order is followed; results carry COCO ids and xywh."""
    preds = [prediction([[10, 10, 40, 30]], [0.5], [0]), prediction([[50, 20, 90, 60]], [0.25], [1])]
    targets = [{"image_id": 1}, {"image_id": 2}]
    evaluator = COCOEvaluator(tiny_coco())
    evaluator.update(preds, targets)
    assert evaluator.results() == [
        {"image_id": 1, "category_id": 5, "bbox": [10.0, 10.0, 30.0, 20.0], "score": 0.5},
        {"image_id": 2, "category_id": 9, "bbox": [50.0, 20.0, 40.0, 40.0], "score": 0.25},
    ]
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    swapped = COCOEvaluator(tiny_coco(), category_ids=[9, 5])
    swapped.update(preds, targets)
    assert [r["category_id"] for r in swapped.results()] == [9, 5]
    assert swapped.compute()["map"] == 0.0
    swapped.reset()
    assert swapped.results() == [] and swapped.summary == ""


def test_image_seen_again_replaces_its_detections() -> None:
    evaluator = COCOEvaluator(tiny_coco())
    evaluator.update([prediction([[0, 0, 5, 5]], [0.9], [0])], [{"image_id": 1}])
    evaluator.update([prediction([[10, 10, 40, 30]], [0.5], [0])], [{"image_id": 1}])
    assert [r["bbox"] for r in evaluator.results()] == [[10.0, 10.0, 30.0, 20.0]]


def test_update_errors() -> None:
    evaluator = COCOEvaluator(tiny_coco())
    with pytest.raises(ValueError, match=r"image_id 3 \(int\) is not an image of the ground truth"):
        evaluator.update([prediction([], [], [])], [{"image_id": 3}])
    with pytest.raises(ValueError, match=r"image 1: label 2 is not in 0\.\.1"):
        evaluator.update([prediction([[0, 0, 1, 1]], [0.5], [2])], [{"image_id": 1}])
    with pytest.raises(ValueError, match=r"2 predictions and 1 targets"):
        evaluator.update([prediction([], [], []), prediction([], [], [])], [{"image_id": 1}])
    with pytest.raises(ValueError, match=r"category_ids \[7\] are not categories of the ground truth"):
        COCOEvaluator(tiny_coco(), category_ids=[5, 7])


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, r"results file .*missing\.json does not exist"),
        ("[{", ValueError, r"results file .*results\.json is not valid json"),
        ('{"image_id": 1}', ValueError, r"results file .*results\.json holds a dict; it must be a json list"),
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', ValueError, r"detection 0 lacks category_id"),
        (
            '[{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 1},'
            ' {"image_id": 42, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 1}]',
            ValueError,
            r"results file .*results\.json names image_id 42 \(int\), which annotations file .*gt\.json does not have",
        ),
        (
            '[{"image_id": 1, "category_id": 6, "bbox": [0, 0, 1, 1], "score": 1}]',
            ValueError,
            r"results file .*results\.json names category_id 6 \(int\), which annotations file",
        ),
    ],
)
def test_results_file_errors(content: str | None, error: type[Exception], message: str, tmp_path: Path) -> None:
    annotations = tmp_path / "gt.json"
    annotations.write_text(json.dumps(tiny_coco().dataset))
    results = tmp_path / ("missing.json" if content is None else "results.json")
    if content is not None:
        results.write_text(content)
    with pytest.raises(error, match=message):
        evaluate_results_file(annotations, results)


def test_annotations_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"annotations file .*nope\.json does not exist"):
        COCOEvaluator(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError, match=r"annotations file .*bad\.json is not valid json"):
        load_coco(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"annotations file .*list\.json is not in COCO format"):
        load_coco(tmp_path / "list.json")
