"""Two processes give the metrics of one: ``validate`` and ``test`` under Lightning's DDP (gloo, CPU) from the
same checkpoint, on splits whose size two processes do not divide, for every task; and a two-process ``fit`` with
an unreadable training image finishes and reports it once.

The two-process runs are real ``mobiletasks`` commands in a subprocess (Lightning starts the second process by
running the command again), as users start them. Evaluation batches hold one image, so that every image meets
the same arithmetic in both runs and the numbers can be compared exactly.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from data_trees import DataTrees
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mobiletasks.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("pr_curve", "confusion_matrix", "attribute_ap")
ONE_IMAGE = ["--data.init_args.eval_batch_size", "1", "--data.init_args.num_workers", "0"]
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def coco_subset(trees: DataTrees, tmp_path: Path, count: int) -> Path:
    """The first ``count`` coco128 val images as a COCO annotation file (the images stay where they are)."""
    data = json.loads((trees.coco128 / "annotations/instances_val2017.json").read_text())
    data["images"] = data["images"][:count]
    kept = {image["id"] for image in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    path = tmp_path / "instances_val15.json"
    path.write_text(json.dumps(data))
    return path


def voc_subset(trees: DataTrees, tmp_path: Path, count: int) -> Path:
    """A VOCdevkit whose 2012 ``val13`` lists (detection and segmentation) hold the first ``count`` val images."""
    source = trees.voc128 / "VOC2012"
    year = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "Annotations", "SegmentationClass"):
        (year / folder).parent.mkdir(parents=True, exist_ok=True)
        (year / folder).symlink_to(source / folder)
    for kind in ("Main", "Segmentation"):
        ids = (source / "ImageSets" / kind / "val.txt").read_text().split()[:count]
        (year / "ImageSets" / kind).mkdir(parents=True)
        (year / "ImageSets" / kind / "val13.txt").write_text("\n".join(ids) + "\n")
    return year.parent


def metrics(folder: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every ``prefix`` metric in the CSV logs under ``folder``."""
    (path,) = folder.rglob("metrics.csv")
    values: dict[str, float] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if k.startswith(prefix) and v != ""})
    return values


def one_process(command: str, args: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir()
    monkeypatch.chdir(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes below
    try:
        assert main([command, *args, "--trainer.devices", "1"]) == 0
    finally:
        torch.set_num_threads(threads)


def two_processes(command: str, args: list[str], folder: Path) -> str:
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mobiletasks", command, *args, *DDP],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


def train_checkpoint(args: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One training step, so the model is no longer its initialization; its last.ckpt."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    steps = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
    assert main(["fit", *args, *steps]) == 0
    (last,) = folder.rglob("last.ckpt")
    return last


def check_same(command: str, args: list[str], split: str, size: int, tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    checkpoint = train_checkpoint(args, tmp_path / "fit", mp)
    run = [*args, *ONE_IMAGE, "--ckpt_path", str(checkpoint)]
    one_process(command, run, tmp_path / "one", mp)
    two_processes(command, run, tmp_path / "two")
    one, two = metrics(tmp_path / "one", f"{split}/"), metrics(tmp_path / "two", f"{split}/")
    assert one[f"{split}/images"] == size and size % 2 == 1
    assert two == one  # every metric, per class too, to the last bit
    # the figures are those of the whole split; the pictures those of the first process, logged once
    (figure,) = [p for p in (tmp_path / "one").rglob(f"*_{split}.csv") if p.stem.rpartition("_")[0] in FIGURES]
    (same,) = (tmp_path / "two").rglob(figure.name)
    assert same.read_text() == figure.read_text()
    (events,) = (tmp_path / "two").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent), size_guidance={"images": 0})
    accumulator.Reload()
    pictures = [tag for tag in accumulator.Tags()["images"] if tag.startswith(f"{split}/pictures/")]
    assert len(pictures) == min(8, (size + 1) // 2)  # the first process's share: images 0, 2, 4, ...
    return None


@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_detection_two_processes_score_as_one(
    kind: str, trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "coco":
        data = ["--data.init_args.root", str(trees.coco128), "--data.init_args.train_images", "images/train2017"]
        data += ["--data.init_args.val_images", "images/val2017"]
        data += ["--data.init_args.val_annotations", str(coco_subset(trees, tmp_path, 15))]
        config, size = "ssdlite_mobilenet_v2_coco", 15
    else:
        voc = voc_subset(trees, tmp_path, 13)
        data = ["--data.init_args.root", str(voc), "--data.init_args.train_sets", "[2012/val13]"]
        data += ["--data.init_args.val_sets", "[2012/val13]"]
        config, size = "ssdlite_mobilenet_v2_voc", 13
    args = ["--config", str(ROOT / "configs/detection" / f"{config}.yaml"), *data]
    args += ["--data.init_args.batch_size", "2", "--data.init_args.image_size", "128"]
    check_same("validate", args, "val", size, tmp_path, monkeypatch)
    if kind == "coco":  # an untrained model scores about 0: its detections themselves must be the same
        (one,) = (tmp_path / "one").rglob("val_results.json")
        (two,) = (tmp_path / "two").rglob("val_results.json")
        detections = sorted(json.loads(one.read_text()), key=json.dumps)
        assert len({d["image_id"] for d in detections}) == size
        assert sorted(json.loads(two.read_text()), key=json.dumps) == detections


def test_segmentation_two_processes_score_as_one(
    trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ["--data.init_args.root", str(voc_subset(trees, tmp_path, 13)), "--data.init_args.train_split", "val13"]
    data += ["--data.init_args.val_split", "val13", "--data.init_args.crop_size", "96"]
    data += ["--data.init_args.batch_size", "2"]
    args = ["--config", str(ROOT / "configs/segmentation/deeplabv3_mobilenet_v2_voc.yaml"), *data]
    check_same("validate", args, "val", 13, tmp_path, monkeypatch)
    assert metrics(tmp_path / "one", "val/")["val/miou"] > 0


@pytest.mark.parametrize("task", ["classification", "attributes"])
def test_classification_two_processes_score_as_one(task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ["--data.init_args.root", str(tmp_path / "shapes"), "--data.init_args.num_images", "55"]
    data += ["--data.init_args.batch_size", "8", "--data.init_args.image_size", "32"]
    args = ["--config", str(ROOT / "configs" / task / "quickstart.yaml"), *data]
    # the generated split is the test split too: `test` runs the same way as `validate`
    check_same("validate", args, "val", 11, tmp_path, monkeypatch)
    key = "val/top1" if task == "classification" else "val/map"
    assert 0 < metrics(tmp_path / "one", "val/")[key] < 1
    if task == "classification":  # predict: every image written once, as one process writes them
        (checkpoint,) = (tmp_path / "fit").rglob("last.ckpt")
        run = [*args, *ONE_IMAGE, "--ckpt_path", str(checkpoint)]
        one_process("predict", run, tmp_path / "predict_one", monkeypatch)
        two_processes("predict", run, tmp_path / "predict_two")
        (one,) = (tmp_path / "predict_one").rglob("predictions.json")
        (two,) = (tmp_path / "predict_two").rglob("predictions.json")
        assert len(json.loads(one.read_text())) == 11
        assert json.loads(two.read_text()) == json.loads(one.read_text())


def test_fit_on_two_processes_replaces_an_unreadable_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    data = ["--data.init_args.root", str(tmp_path / "shapes"), "--data.init_args.num_images", "40"]
    data += ["--data.init_args.batch_size", "4", "--data.init_args.image_size", "32"]
    data += ["--data.init_args.num_workers", "0"]
    args = ["--config", str(ROOT / "configs/classification/quickstart.yaml"), *data]
    # write the generated data, then break one training image
    (tmp_path / "gen").mkdir()
    monkeypatch.chdir(tmp_path / "gen")
    assert main(["fit", *args, "--trainer.fast_dev_run", "1"]) == 0
    train = sorted((tmp_path / "shapes" / "train").rglob("*.jpg"))
    assert len(train) % 2 == 0 and Image.open(train[0]).size
    train[0].write_bytes(b"not a picture")
    steps = ["--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1"]
    out = two_processes("fit", [*args, *steps], tmp_path / "two")
    assert out.count("samples could not be read this epoch") == 1, out[-3000:]
    assert "train: 1 samples could not be read" in out
    assert metrics(tmp_path / "two", "train/")["train/replaced_samples"] == 1


def test_unreadable_validation_image_read_ahead_by_workers_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DataLoader workers read the first batches before the epoch's first hook: the image is still counted."""
    data = ["--data.init_args.root", str(tmp_path / "shapes"), "--data.init_args.num_images", "55"]
    data += ["--data.init_args.batch_size", "8", "--data.init_args.image_size", "32"]
    args = ["--config", str(ROOT / "configs/classification/quickstart.yaml"), *data]
    checkpoint = train_checkpoint(args, tmp_path / "fit", monkeypatch)
    first = sorted((tmp_path / "shapes" / "val").rglob("*.jpg"))[0]  # in the first batch
    first.write_bytes(b"not a picture")
    run = [*args, "--ckpt_path", str(checkpoint), "--data.init_args.num_workers", "2"]
    run += ["--data.init_args.eval_batch_size", "2"]
    for k in range(3):  # the workers race the hook: several runs
        with pytest.raises(ValueError, match="1 of 11 images could not be read"):
            one_process("validate", run, tmp_path / f"strict{k}", monkeypatch)
    one_process("validate", [*run, "--model.init_args.skip_unreadable", "true"], tmp_path / "skip", monkeypatch)
    assert metrics(tmp_path / "skip", "val/")["val/images"] == 10


def test_a_share_of_no_image_predicts_nothing() -> None:
    """A process whose batch holds only places of other processes (or unreadable images) gets an empty batch."""
    from mobiletasks.data.collate import classification_collate, detection_collate, segmentation_collate
    from mobiletasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

    small = {"model_kwargs": {"width_mult": 0.25}}
    segmenter = SegmentationTask("deeplabv3_mobilenet_v2", num_classes=3, **small).eval()
    assert segmenter.predict_step(segmentation_collate([None]), 0).shape[0] == 0
    detector = DetectionTask("ssdlite_mobilenet_v2", num_classes=3, **small).eval()
    assert detector.predict_step(detection_collate([None]), 0) == []
    classifier = ClassificationTask("mobilenet_v1", num_classes=3, **small).eval()
    assert classifier.predict_step(classification_collate([None]), 0).shape == (0, 3)
