"""``figures()``, ``tables()`` and ``save_figures`` of every evaluator, and ``mobiletasks evaluate --plots``: the
plotted numbers are the logged ones (read back from the Figure's artists and from the CSV files), the logged ones
equal trusted references (pycocotools through torchmetrics, counts built here), and under ``torch.distributed``
rank 0 holds the pictures of the whole split."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor

from mobiletasks.cli import main
from mobiletasks.evaluation import (
    AttributeEvaluator,
    ClassificationEvaluator,
    COCOEvaluator,
    SegmentationEvaluator,
    VOCEvaluator,
    save_figures,
)
from mobiletasks.evaluation.coco import STAT_NAMES
from mobiletasks.evaluation.plots import (
    CONFUSION_CORNER,
    confusion_matrix_figure,
    pr_curve_figure,
    row_normalized,
)

# ------------------------------------------------------------------------------------------------- helpers

CATEGORIES = [  # two categories share a name; "kite" has detections but no ground truth
    {"id": 1, "name": "person"},
    {"id": 4, "name": "sign"},
    {"id": 7, "name": "sign"},
    {"id": 9, "name": "kite"},
]
NAMES = {1: "person", 4: "sign_4", 7: "sign_7"}  # the unique names of the categories with ground truth


def synthetic_coco(seed: int = 0, images: int = 8) -> dict[str, Any]:
    """Ground truth: 1 to 3 integer boxes per image of categories 1, 4 and 7, and one crowd region."""
    g = torch.Generator().manual_seed(seed)
    anns = []
    for image_id in range(1, images + 1):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            x, y = (int(v) for v in torch.randint(0, 120, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(20, 60, (2,), generator=g))
            category = [1, 4, 7][int(torch.randint(0, 3, (1,), generator=g))]
            anns.append({"image_id": image_id, "category_id": category, "bbox": [x, y, w, h], "iscrowd": 0})
    anns.append({"image_id": 1, "category_id": 4, "bbox": [150, 100, 40, 40], "iscrowd": 1})
    for k, ann in enumerate(anns, start=1):
        ann.update(id=k, area=ann["bbox"][2] * ann["bbox"][3])
    return {
        "images": [{"id": i, "width": 200, "height": 180} for i in range(1, images + 1)],
        "categories": CATEGORIES,
        "annotations": anns,
    }


def synthetic_detections(data: dict[str, Any], seed: int = 1) -> list[dict[str, Any]]:
    """A known outcome per category: person found exactly (AP 1), sign_4 found with integer jitter (some IoUs below
    the thresholds), missed now and then and mixed with false positives (0 < AP < 1), sign_7 and kite detected only
    where nothing is (AP 0; kite: no ground truth, no AP). Scores distinct, 3 decimals."""
    g = torch.Generator().manual_seed(seed)
    detections = []
    for ann in data["annotations"]:
        if ann["iscrowd"]:
            continue
        x, y, w, h = ann["bbox"]
        if ann["category_id"] == 1:
            detections.append({"image_id": ann["image_id"], "category_id": 1, "bbox": [x, y, w, h]})
        elif ann["category_id"] == 4 and float(torch.rand(1, generator=g)) > 0.2:
            dx, dy, dw, dh = (int(v) for v in torch.randint(-6, 7, (4,), generator=g))
            detections.append({"image_id": ann["image_id"], "category_id": 4, "bbox": [x + dx, y + dy, w + dw, h + dh]})
    for _ in range(12):  # false positives: boxes in the bottom-right corner, where no box is
        image_id = int(torch.randint(1, len(data["images"]) + 1, (1,), generator=g))
        category = [4, 7, 9][int(torch.randint(0, 3, (1,), generator=g))]
        detections.append({"image_id": image_id, "category_id": category, "bbox": [182, 165, 15, 12]})
    scores = torch.randperm(len(detections), generator=g).add(1).tolist()
    for det, score in zip(detections, scores, strict=True):
        det["score"] = round(score / (len(detections) + 1), 3)
    assert len({d["score"] for d in detections}) == len(detections)
    return detections


def index(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def xyxy(boxes: list[list[float]]) -> Tensor:
    xywh = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def coco_batches(data: dict[str, Any], detections: list[dict[str, Any]]) -> tuple[list[dict[str, Tensor]], list[Any]]:
    """Per image, a model-style prediction (contiguous labels: the sorted category ids) and its target."""
    label = {c: k for k, c in enumerate(sorted(c["id"] for c in data["categories"]))}
    preds, targets = [], []
    for image in data["images"]:
        mine = [d for d in detections if d["image_id"] == image["id"]]
        preds.append(
            {
                "boxes": xyxy([d["bbox"] for d in mine]),
                "scores": torch.tensor([d["score"] for d in mine], dtype=torch.float32),
                "labels": torch.tensor([label[d["category_id"]] for d in mine], dtype=torch.int64),
            }
        )
        targets.append({"image_id": image["id"]})
    return preds, targets


def torchmetrics_ap_per_category(data: dict[str, Any], detections: list[dict[str, Any]]) -> dict[int, float]:
    """The trusted reference: torchmetrics' ``map_per_class`` (pycocotools backend) by category id."""
    from torchmetrics.detection import MeanAveragePrecision

    ids = sorted(c["id"] for c in data["categories"])
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools")
    preds, _ = coco_batches(data, detections)
    gts = []
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        gts.append(
            {
                "boxes": xyxy([a["bbox"] for a in anns]),
                "labels": torch.tensor([ids.index(a["category_id"]) for a in anns], dtype=torch.int64),
                "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
                "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            }
        )
    metric.update(preds, gts)
    result = metric.compute()
    classes = result["classes"].reshape(-1).tolist()
    per_class = result["map_per_class"].reshape(-1).tolist()
    return {ids[c]: float(ap) for c, ap in zip(classes, per_class, strict=True)}


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def curves_from_csv(rows: list[list[str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{class: (recall, precision)}`` of a pr_curve CSV."""
    assert rows[0] == ["class", "recall", "precision"]
    points: dict[str, list[tuple[float, float]]] = {}
    for name, recall, precision in rows[1:]:
        points.setdefault(name, []).append((float(recall), float(precision)))
    return {name: (np.array([r for r, _ in p]), np.array([q for _, q in p])) for name, p in points.items()}


def panels(figure: Figure) -> dict[str, Axes]:
    """The visible panels of a PR figure by class name (the title is ``"<name>  AP <ap>"``)."""
    return {ax.get_title().split("  AP ")[0]: ax for ax in figure.axes if ax.get_visible()}


def solid_line(ax: Axes) -> np.ndarray:
    (line,) = [line for line in ax.lines if line.get_linestyle() == "-"]
    return np.asarray(line.get_xydata(), dtype=np.float64)


def step_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """The area under a ``steps-pre`` curve: precision[i] holds on (recall[i-1], recall[i]]."""
    return float(np.sum(np.diff(recall) * precision[1:]))


def counts_from_csv(rows: list[list[str]], names: list[str]) -> np.ndarray:
    assert rows[0] == [CONFUSION_CORNER, *names]
    assert [row[0] for row in rows[1:]] == names
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int64)


def check_png(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 0 and image.height > 0
        return image.size


# ---------------------------------------------------------------------------------------------------- COCO


def test_coco_curves_average_to_the_per_category_ap_of_pycocotools(tmp_path: Path) -> None:
    data = synthetic_coco()
    detections = synthetic_detections(data)
    evaluator = COCOEvaluator(index(data))
    evaluator.update(*coco_batches(data, detections))
    metrics = evaluator.compute()

    reference = torchmetrics_ap_per_category(data, detections)
    assert list(metrics)[: len(STAT_NAMES)] == list(STAT_NAMES)
    assert [k for k in metrics if k.startswith("ap/")] == [f"ap/{n}" for n in NAMES.values()]  # kite: no ground truth
    for category, name in NAMES.items():  # torchmetrics returns float32: equal to its rounding
        assert metrics[f"ap/{name}"] == pytest.approx(reference[category], rel=1e-6, abs=1e-7), name
    assert reference[9] == -1.0  # no ground truth: left out above, as torchmetrics marks it
    # the known outcome: exact boxes score 1 (pycocotools' precision is tp / (tp + fp + eps)), only misses 0
    assert metrics["ap/person"] == pytest.approx(1.0, abs=1e-12)
    assert 0.1 < metrics["ap/sign_4"] < 0.9
    assert metrics["ap/sign_7"] == 0.0
    # per-category APs are per-category means of what map averages: their mean is map
    assert np.mean([metrics[f"ap/{n}"] for n in NAMES.values()]) == pytest.approx(metrics["map"], abs=1e-12)

    written = save_figures(evaluator, tmp_path / "plots", "val")
    assert written == [tmp_path / "plots" / "pr_curve_val.png", tmp_path / "plots" / "pr_curve_val.csv"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["pr_curve_val.csv", "pr_curve_val.png"]
    check_png(written[0])
    curves = curves_from_csv(read_csv(written[1]))
    assert list(curves) == list(NAMES.values())
    recall_thresholds = np.linspace(0.0, 1.0, 101)
    for name, (recall, precision) in curves.items():
        assert recall == pytest.approx(recall_thresholds, abs=1e-12)
        assert precision.mean() == pytest.approx(metrics[f"ap/{name}"], abs=1e-12), name

    # the figure: one panel per category with ground truth, its solid curve the CSV's, the IoU=0.50 curve dashed
    figure = evaluator.figures()["pr_curve"]
    by_name = panels(figure)
    assert list(by_name) == list(NAMES.values())
    for name, ax in by_name.items():
        xy = solid_line(ax)
        assert xy[:, 0] == pytest.approx(curves[name][0], abs=1e-12)
        assert xy[:, 1] == pytest.approx(curves[name][1], abs=1e-12)
        assert ax.get_title() == f"{name}  AP {metrics[f'ap/{name}']:.3f}"
        (dashed,) = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert np.all(dashed.get_xydata()[:, 1] >= xy[:, 1] - 1e-12)  # IoU 0.50 is the easiest threshold
    assert evaluator.tables()["pr_curve"][1:] == [
        [n, r, p] for n, (rs, ps) in curves.items() for r, p in zip(rs, ps, strict=True)
    ]


def test_coco_nothing_to_plot() -> None:
    data = synthetic_coco()
    evaluator = COCOEvaluator(index(data))
    with pytest.raises(RuntimeError, match=r"call compute\(\) first"):
        evaluator.figures()
    assert evaluator.compute() == dict.fromkeys(STAT_NAMES, -1.0)  # no image seen
    assert evaluator.figures() == {} and evaluator.tables() == {}
    # an image seen without detections: pycocotools' precision of its categories is 0, so are the curves
    image_1 = {a["category_id"] for a in data["annotations"] if a["image_id"] == 1 and not a["iscrowd"]}
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    evaluator.update([nothing], [{"image_id": 1}])
    assert evaluator.compute() == {**dict.fromkeys(STAT_NAMES, 0.0), **{f"ap/{NAMES[c]}": 0.0 for c in sorted(image_1)}}
    rows = evaluator.tables()["pr_curve"]
    assert len(rows) == 1 + 101 * len(image_1) and {row[2] for row in rows[1:]} == {0.0}
    evaluator.reset()
    with pytest.raises(RuntimeError, match=r"call compute\(\) first"):
        evaluator.tables()


# ----------------------------------------------------------------------------------------------------- VOC


def voc_batches(seed: int = 0) -> tuple[list[dict[str, Tensor]], list[dict[str, Any]]]:
    """Ten images, classes a, b, c (c never in the ground truth): jittered and missed boxes, false positives."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for image_id in range(10):
        n = int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.randint(0, 100, (n, 2), generator=g).float()
        boxes = torch.cat([xy, xy + torch.randint(10, 40, (n, 2), generator=g)], dim=1)
        labels = torch.randint(0, 2, (n,), generator=g)
        difficult = torch.rand(n, generator=g) < 0.15
        jitter = torch.randn(n, 4, generator=g) * 4
        found = torch.rand(n, generator=g) > 0.25
        fp = torch.randint(0, 2, (2, 2), generator=g).float() * 50 + 150
        pred_boxes = torch.cat([(boxes + jitter)[found], torch.cat([fp, fp + 20], dim=1)])
        pred_boxes = torch.cat([pred_boxes[:, :2], torch.maximum(pred_boxes[:, 2:], pred_boxes[:, :2])], dim=1)
        pred_labels = torch.cat([labels[found], torch.randint(0, 3, (2,), generator=g)])
        preds.append({"boxes": pred_boxes, "labels": pred_labels, "scores": torch.rand(len(pred_boxes), generator=g)})
        targets.append({"boxes": boxes, "labels": labels, "difficult": difficult, "image_id": image_id})
    return preds, targets


def test_voc_area_under_the_plotted_steps_is_the_ap(tmp_path: Path) -> None:
    evaluator = VOCEvaluator(["a", "b", "c"])
    evaluator.update(*voc_batches())
    metrics = evaluator.compute()
    assert metrics["ap/c"] == -1.0 and all(0.05 < metrics[f"ap/{n}"] < 0.95 for n in "ab")

    by_name = panels(evaluator.figures()["pr_curve"])
    assert list(by_name) == ["a", "b"]  # c has no ground truth: no panel
    for name, ax in by_name.items():
        (line,) = ax.lines
        assert line.get_drawstyle() == "steps-pre"
        xy = np.asarray(line.get_xydata(), dtype=np.float64)
        assert xy[0, 0] == 0.0 and np.all(np.diff(xy[:, 0]) > 0)  # corners only, recall growing
        assert step_area(xy[:, 0], xy[:, 1]) == pytest.approx(metrics[f"ap/{name}"], rel=1e-12), name
        assert np.all(np.diff(xy[:, 1]) <= 0)  # an envelope: precision never rises with recall

    (png, table) = save_figures(evaluator, tmp_path, "test")
    assert (png.name, table.name) == ("pr_curve_test.png", "pr_curve_test.csv")
    check_png(png)
    curves = curves_from_csv(read_csv(table))
    assert list(curves) == ["a", "b"]
    for name, (recall, precision) in curves.items():
        assert step_area(recall, precision) == pytest.approx(metrics[f"ap/{name}"], rel=1e-12), name


def test_voc_control_a_changed_ranking_changes_the_area() -> None:
    """The area follows the ranking: the same detections scored in reverse give another AP, and its own curve."""
    preds, targets = voc_batches()
    reversed_preds = [{**p, "scores": 1 - p["scores"]} for p in preds]
    areas = []
    for batch in (preds, reversed_preds):
        evaluator = VOCEvaluator(["a", "b", "c"])
        evaluator.update(batch, targets)
        ap = evaluator.compute()["ap/a"]
        xy = solid_line(panels(evaluator.figures()["pr_curve"])["a"])
        assert step_area(xy[:, 0], xy[:, 1]) == pytest.approx(ap, rel=1e-12)
        areas.append(ap)
    assert abs(areas[0] - areas[1]) > 0.01


# ---------------------------------------------------------------------------------------------- segmentation


def test_segmentation_counts_give_the_logged_ious(tmp_path: Path) -> None:
    names = ["background", "cat", "dog", "bird", "absent"]
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (3, 20, 30), generator=g)  # "absent" never occurs
    masks[:, :2] = 255
    noise = torch.randint(0, 4, (3, 20, 30), generator=g)
    preds = torch.where(torch.rand(3, 20, 30, generator=g) < 0.7, masks.clamp(max=3), noise)
    evaluator = SegmentationEvaluator(5, names)
    evaluator.update(preds, masks)
    metrics = evaluator.compute()

    (png, table) = save_figures(evaluator, tmp_path, "val")
    assert png.name == "confusion_matrix_val.png" and table.name == "confusion_matrix_val.csv"
    check_png(png)
    counts = counts_from_csv(read_csv(table), names)
    # the counts are the pixels, built here: ground truth * K + prediction over the counted pixels
    counted = masks != 255
    expected = torch.bincount(masks[counted] * 5 + preds[counted], minlength=25).reshape(5, 5).numpy()
    assert np.array_equal(counts, expected)
    diag = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - diag
    for c, name in enumerate(names):
        iou = diag[c] / union[c] if union[c] else -1.0
        assert metrics[f"iou/{name}"] == pytest.approx(iou, abs=1e-12), name

    ax = evaluator.figures()["confusion_matrix"].axes[0]
    shown = np.asarray(ax.images[0].get_array(), dtype=np.float64)
    sums = expected.sum(1, keepdims=True)
    assert np.allclose(shown[:4], expected[:4] / sums[:4], rtol=0, atol=1e-12)  # recall on the diagonal
    assert np.all(shown[4] == 0)  # "absent" has no ground-truth pixel: its row is 0
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert len(ax.texts) == int(np.count_nonzero(shown))  # few classes: the shares are written in the cells


def test_segmentation_nothing_seen_writes_nothing(tmp_path: Path) -> None:
    evaluator = SegmentationEvaluator(3)
    with pytest.raises(RuntimeError, match=r"call compute\(\) first"):
        save_figures(evaluator, tmp_path / "out", "val")
    evaluator.compute()
    assert save_figures(evaluator, tmp_path / "out", "val") == []
    assert list((tmp_path / "out").iterdir()) == []


# -------------------------------------------------------------------------------------------- classification


def test_classification_confusion_matrix_counts_the_top1_predictions(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, 6, generator=g), torch.randint(0, 6, (200,), generator=g)
    logits[torch.arange(200), labels] += 1.0  # better than chance
    names = ["ant", "bee", "cow", "dog", "eel", "fox"]
    evaluator = ClassificationEvaluator(6, top_k=(1, 5), class_names=names)
    for start in range(0, 200, 64):
        evaluator.update(logits[start : start + 64], labels[start : start + 64])
    metrics = evaluator.compute()

    (png, table) = save_figures(evaluator, tmp_path, "test")
    check_png(png)
    counts = counts_from_csv(read_csv(table), names)
    expected = torch.bincount(labels * 6 + logits.argmax(1), minlength=36).reshape(6, 6).numpy()
    assert np.array_equal(counts, expected)
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["top1"], abs=1e-7)  # top1: float32
    assert 0.3 < metrics["top1"] < 0.9
    shown = np.asarray(evaluator.figures()["confusion_matrix"].axes[0].images[0].get_array())
    assert np.allclose(shown, expected / expected.sum(1, keepdims=True), rtol=0, atol=1e-12)
    evaluator.reset()
    assert evaluator.compute() == {"top1": 0.0, "top5": 0.0}
    assert evaluator.figures() == {} and evaluator.tables() == {}
    with pytest.raises(ValueError, match=r"class_names has 2 names for num_classes=6"):
        ClassificationEvaluator(6, class_names=["a", "b"])


# ---------------------------------------------------------------------------------------------------- attributes


def test_attribute_bars_are_the_logged_aps(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    names = ["smiling", "bald", "hat", "glasses", "never"]
    labels = (torch.rand(60, 5, generator=g) < 0.4).long()
    labels[:, 4] = 0  # "never" has no positive: no AP
    logits = torch.randn(60, 5, generator=g) + 1.5 * labels
    evaluator = AttributeEvaluator(names)
    evaluator.update(logits, labels)
    metrics = evaluator.compute()
    aps = {n: metrics[f"ap/{n}"] for n in names[:4]}
    assert "ap/never" not in metrics and metrics["ap_undefined"] == 1.0

    (png, table) = save_figures(evaluator, tmp_path, "val")
    assert png.name == "attribute_ap_val.png"
    check_png(png)
    rows = read_csv(table)
    assert rows[0] == ["attribute", "ap"]
    assert {name: float(ap) for name, ap in rows[1:]} == aps
    assert [float(ap) for _, ap in rows[1:]] == sorted(aps.values(), reverse=True)

    ax = evaluator.figures()["attribute_ap"].axes[0]
    bars = {label.get_text(): patch.get_width() for label, patch in zip(ax.get_yticklabels(), ax.patches, strict=True)}
    assert bars == aps
    assert [patch.get_width() for patch in ax.patches] == sorted(aps.values())  # sorted, highest on top
    (mean_line,) = ax.lines
    assert mean_line.get_xdata()[0] == pytest.approx(metrics["map"]) == pytest.approx(np.mean(list(aps.values())))
    assert "1 without a positive image left out" in ax.get_title()


# --------------------------------------------------------------------------------------------------- evaluate


def test_evaluate_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic_coco()
    annotations, results = tmp_path / "gt.json", tmp_path / "my_detector.json"
    annotations.write_text(json.dumps(data))
    results.write_text(json.dumps(synthetic_detections(data)))
    out = tmp_path / "plots" / "deep"
    argv = ["evaluate", "--annotations", str(annotations), "--results", str(results), "--plots", str(out)]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert "wrote" in captured.err and str(out / "pr_curve_my_detector.png") in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["pr_curve_my_detector.csv", "pr_curve_my_detector.png"]
    check_png(out / "pr_curve_my_detector.png")
    curves = curves_from_csv(read_csv(out / "pr_curve_my_detector.csv"))
    assert list(curves) == list(NAMES.values())
    reference = torchmetrics_ap_per_category(data, synthetic_detections(data))
    for category, name in NAMES.items():
        assert curves[name][1].mean() == pytest.approx(printed[f"ap/{name}"], abs=1e-12)
        assert printed[f"ap/{name}"] == pytest.approx(reference[category], rel=1e-6, abs=1e-7)
    # the table: the per-category lines after the twelve stats, to 4 decimals
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    table = dict(line.rsplit(None, 1) for line in lines[len(STAT_NAMES) + 2 :])
    assert table == {f"ap/{n}": f"{curves[n][1].mean():.4f}" for n in NAMES.values()}


@pytest.mark.parametrize("plots", ["", "a_file"])
def test_evaluate_plots_needs_a_folder(plots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file or an empty path as --plots is named before anything is scored (not "File exists" from deep inside)."""
    (tmp_path / "a_file").write_text("")
    target = str(tmp_path / plots) if plots else ""
    argv = ["evaluate", "--annotations", "gt.json", "--results", "r.json", "--plots", target]  # neither exists
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--plots {target!r} is {'a file' if plots else 'empty'}: give a folder" in err


# ------------------------------------------------------------------------------------------------ distributed


def _all_tables(rank: int, world: int) -> dict[str, Any]:
    """Every evaluator fed this rank's share (every ``world``-th item) of the same data; their tables after compute."""
    data = synthetic_coco()
    coco = COCOEvaluator(index(data))
    preds, targets = coco_batches(data, synthetic_detections(data))
    coco.update(preds[rank::world], targets[rank::world])
    voc = VOCEvaluator(["a", "b", "c"])
    preds, targets = voc_batches()
    voc.update(preds[rank::world], targets[rank::world])
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (5, 12, 16), generator=g)
    segmentation = SegmentationEvaluator(4)
    segmentation.update(torch.randint(0, 4, (5, 12, 16), generator=g)[rank::world], masks[rank::world])
    logits, labels = torch.randn(41, 5, generator=g), torch.randint(0, 5, (41,), generator=g)
    classification = ClassificationEvaluator(5)
    classification.update(logits[rank::world], labels[rank::world])
    attributes = AttributeEvaluator(["x", "y", "z"])
    attributes.update(logits[rank::world, :3], (torch.rand(41, 3, generator=g) < 0.5).long()[rank::world])
    evaluators: list[tuple[str, Any]] = [
        ("coco", coco),
        ("voc", voc),
        ("segmentation", segmentation),
        ("classification", classification),
        ("attributes", attributes),
    ]
    tables: dict[str, Any] = {}
    for name, evaluator in evaluators:
        evaluator.compute()
        tables[name] = evaluator.tables()
        tables[f"{name} figures"] = sorted(evaluator.figures())
    return tables


def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        tables = _all_tables(rank, world)
    finally:
        dist.destroy_process_group()
    Path(f"{out}.{rank}").write_text(json.dumps(tables))


def assert_tables_equal(got: Any, expected: Any) -> None:
    """Equal structure and strings, ints exactly, floats to 1e-12 (summation order may differ across processes)."""
    if isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-12)
    elif isinstance(expected, list | dict):
        assert type(got) is type(expected) and len(got) == len(expected)
        pairs = (
            zip(got, expected, strict=True)
            if isinstance(expected, list)
            else ((got[k], v) for k, v in expected.items())
        )
        for g, e in pairs:
            assert_tables_equal(g, e)
    else:
        assert got == expected


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method (Linux, macOS)")
def test_two_processes_plot_the_whole_split(tmp_path: Path) -> None:
    """Rank 0's tables after compute under two gloo processes equal one process's over the whole data."""
    one = json.loads(json.dumps(_all_tables(0, 1)))
    # forked, not spawned: the children need not import torch, torchmetrics and pycocotools again (seconds each)
    init, out = f"file://{tmp_path / 'init'}", str(tmp_path / "tables")
    mp.start_processes(_worker, args=(2, init, out), nprocs=2, join=True, start_method="fork")
    two = [json.loads((tmp_path / f"tables.{rank}").read_text()) for rank in range(2)]
    for name in ("coco", "voc", "segmentation", "classification", "attributes"):
        assert one[f"{name} figures"] and two[0][f"{name} figures"] == one[f"{name} figures"], name
        assert_tables_equal(two[0][name], one[name])
        assert_tables_equal(two[1][name], one[name])  # every process holds the whole split
    # control: one process's own share is not the whole split
    segmentation_share = json.loads(json.dumps(_share_tables()))
    assert segmentation_share != one["segmentation"]


def _share_tables() -> Any:
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (5, 12, 16), generator=g)
    evaluator = SegmentationEvaluator(4)
    evaluator.update(torch.randint(0, 4, (5, 12, 16), generator=g)[0::2], masks[0::2])
    evaluator.compute()
    return evaluator.tables()


# ------------------------------------------------------------------------------------------ scale and writing


def test_many_classes_stay_readable() -> None:
    """80 PR panels in a 9 x 9 grid; a 200-class confusion matrix without numbers in its cells, labels shrunk."""
    from mobiletasks.evaluation.plots import Curve

    recall = np.linspace(0.0, 1.0, 101)
    curves = [Curve(f"class {k}", recall, 1 - recall**2, 2 / 3) for k in range(80)]
    figure = pr_curve_figure(curves, "eighty")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 80 and len(figure.axes) == 81  # ceil(sqrt(80)) = 9 columns, 9 rows
    assert len({round(ax.get_position().x0, 6) for ax in visible}) == 9  # columns
    assert len({round(ax.get_position().y0, 6) for ax in visible}) == 9  # rows
    width, height = figure.get_size_inches()
    assert 9 * 2 < width < 9 * 2.5 and 9 * 2 < height < 9 * 2.5  # about 2 inches a panel
    assert [ax.get_title() for ax in visible] == [f"class {k}  AP 0.667" for k in range(80)]
    names = [f"class {k}" for k in range(200)]
    counts = np.random.default_rng(0).integers(0, 50, (200, 200))
    matrix = confusion_matrix_figure(counts, names, "two hundred")
    ax = matrix.axes[0]
    assert len(ax.texts) == 0 and ax.get_yticklabels()[0].get_fontsize() < 10
    assert np.allclose(ax.images[0].get_array(), row_normalized(counts))
    with pytest.raises(ValueError, match=r"confusion matrix has shape \(200, 200\) for 3 class names"):
        confusion_matrix_figure(counts, names[:3], "wrong")


def test_save_figures_writes_whole_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = ClassificationEvaluator(3)
    evaluator.update(torch.eye(3), torch.tensor([0, 1, 1]))
    evaluator.compute()
    (tmp_path / "confusion_matrix_val.csv").write_text("the old file\n")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("mobiletasks.evaluation.plots._write_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        save_figures(evaluator, tmp_path, "val")
    # the PNG was written whole; the CSV that failed left the old file and no temporary file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix_val.csv", "confusion_matrix_val.png"]
    assert (tmp_path / "confusion_matrix_val.csv").read_text() == "the old file\n"
    monkeypatch.undo()
    assert [p.name for p in save_figures(evaluator, tmp_path, "val")] == [
        "confusion_matrix_val.png",
        "confusion_matrix_val.csv",
    ]
    assert read_csv(tmp_path / "confusion_matrix_val.csv")[1:] == [
        ["0", "1", "0", "0"],
        ["1", "0", "1", "1"],
        ["2", "0", "0", "0"],
    ]
    with pytest.raises(ValueError, match=r"split is 'a/b'; pass a plain name"):
        save_figures(evaluator, tmp_path, "a/b")


def test_matplotlib_is_imported_lazily() -> None:
    """``import mobiletasks`` does not import matplotlib, and no evaluation module imports it at module level."""
    import ast
    import subprocess
    import sys

    code = "import sys, mobiletasks; print(any(m.split('.')[0] == 'matplotlib' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
    folder = Path(__file__).resolve().parents[1] / "mobiletasks" / "evaluation"
    for path in [*folder.glob("*.py"), folder.parent / "cli" / "evaluate.py"]:
        for node in ast.parse(path.read_text()).body:  # module level; `if TYPE_CHECKING:` blocks are not run
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "matplotlib" for n in names), path
