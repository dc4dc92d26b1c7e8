"""``mobiletasks fit|validate|predict`` on every shipped classification and attribute config, shrunk by
overrides, on fixtures in the datasets' official layouts (Stanford Dogs, CUB, CelebA) and the generated shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from celeba_layout import write_celeba
from official_layouts import write_cub, write_stanford_dogs
from PIL import Image

from mobiletasks.cli import main

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("classification", "attributes")
CONFIGS = {path.stem: path for task in TASKS for path in (ROOT / "configs" / task).glob("*.yaml")}
SMALL = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
SMALL += ["--data.init_args.num_workers", "0", "--data.init_args.image_size", "32"]
STEPS = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0"]
STEPS += ["--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1"]
SHAPES = ["--data.init_args.num_images", "10"]
# where the config's data comes from: a fixture writer (called with the test's folder) or generated shapes
DATA: dict[str, object] = {
    "mobilenet_v1_stanford_dogs": write_stanford_dogs,
    "mobilenet_v1_075_192_stanford_dogs": write_stanford_dogs,
    "mobilenet_v1_cub": write_cub,
    "mobilenet_v1_celeba": write_celeba,
    "mobilenet_v1_celeba_distill": write_celeba,
    "quickstart": SHAPES,
    "quickstart_distill": SHAPES,
}
# configs that distill, and the config (and run name) whose checkpoint is their teacher
TEACHERS = {
    "mobilenet_v1_celeba_distill": ("mobilenet_v1_celeba", "celeba_teacher"),
    "quickstart_distill": ("quickstart", "attributes_quickstart"),
}


def config(name: str) -> Path:
    if name == "quickstart":  # two quickstarts: classification/ and attributes/
        return ROOT / "configs" / "attributes" / "quickstart.yaml"
    return CONFIGS[name]


def data_args(name: str, tmp_path: Path) -> list[str]:
    source = DATA[name]
    if isinstance(source, list):
        return source
    root = tmp_path / "data"
    if not root.exists():
        assert callable(source)
        source(root)
    return ["--data.init_args.root", str(root)]


def run(command: str, name: str, tmp_path: Path, *extra: str, path: Path | None = None) -> int:
    return main([command, "--config", str(path or config(name)), *SMALL, *data_args(name, tmp_path), *extra])


def train_teacher(name: str, tmp_path: Path) -> None:
    teacher_config, run_name = TEACHERS[name]
    args = ["--trainer.logger.init_args.name", run_name, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"]
    assert run("fit", teacher_config, tmp_path, *args, path=config(teacher_config)) == 0
    assert (tmp_path / "runs" / run_name / "checkpoints" / "last.ckpt").is_file()


def test_every_config_is_exercised() -> None:
    assert set(CONFIGS) == set(DATA)


@pytest.mark.parametrize("name", sorted(DATA))
def test_fit_fast_dev_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if name in TEACHERS:  # the distillation configs read their teacher from the teacher run's folder
        train_teacher(name, tmp_path)
    paths = [config(name)] if name != "quickstart" else [ROOT / "configs" / t / "quickstart.yaml" for t in TASKS]
    for path in paths:
        assert run("fit", name, tmp_path, "--trainer.fast_dev_run", "1", path=path) == 0


def chain(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], path: Path | None = None) -> tuple[str, Path]:
    """fit two steps (validating), then validate and predict from the last checkpoint: validate's output and
    the predictions folder."""
    path = path or config(name)
    assert run("fit", name, tmp_path, *STEPS, path=path) == 0
    checkpoints = sorted(tmp_path.glob("runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    last = checkpoints[-1]  # the run just made (a teacher's run may be there too)
    capsys.readouterr()
    assert run("validate", name, tmp_path, "--ckpt_path", str(last), "--trainer.limit_val_batches", "2", path=path) == 0
    out = capsys.readouterr().out
    limit = ["--trainer.limit_predict_batches", "2"]
    assert run("predict", name, tmp_path, "--ckpt_path", str(last), *limit, path=path) == 0
    hyper = torch.load(last, weights_only=True)["hyper_parameters"]
    return out + str(hyper), last.parents[1] / "predictions"


def test_stanford_dogs_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out, predictions = chain("mobilenet_v1_stanford_dogs", tmp_path, capsys)
    assert "val/top1" in out and "'num_classes': 3" in out and "val/top5" not in out  # top-5 of 3 classes: none
    results = json.loads((predictions / "predictions.json").read_text())
    assert len(results) == 4  # two batches of two test images
    assert all([c["name"] for c in r["top_k"]] != [] and len(r["top_k"]) == 3 for r in results)
    assert {c["name"] for c in results[0]["top_k"]} == {"Chihuahua", "Maltese_dog", "beagle"}
    assert Image.open(predictions / "contact_sheet.png").size[0] > 0


def test_celeba_distillation_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The paper's setting: a teacher run, then a student that learns from it alone (alpha 0)."""
    monkeypatch.chdir(tmp_path)
    train_teacher("mobilenet_v1_celeba_distill", tmp_path)
    out, predictions = chain("mobilenet_v1_celeba_distill", tmp_path, capsys)
    assert "val/map" in out and "val/accuracy" in out and "'alpha': 0.0" in out and "'num_classes': 40" in out
    (metrics,) = tmp_path.glob("runs/mobilenet_v1_celeba_distill/version_0/metrics.csv")
    header = metrics.read_text().splitlines()[0]
    assert "train/soft_loss" in header and "train/hard_loss" not in header  # no label entered the loss
    results = json.loads((predictions / "predictions.json").read_text())
    assert len(results) == 2 and len(results[0]["probabilities"]) == 40  # the val split: 2 images
    assert "Smiling" in results[0]["probabilities"]
    student = torch.load(tmp_path / "runs/mobilenet_v1_celeba_distill/checkpoints/last.ckpt", weights_only=True)
    assert not any(k.startswith("teacher") for k in student["state_dict"])


def test_quickstarts_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out, predictions = chain("quickstart", tmp_path, capsys, ROOT / "configs" / "classification" / "quickstart.yaml")
    assert "val/top1" in out and "val/top5" in out and "'num_classes': 5" in out
    assert (tmp_path / "data" / "shapes-cls" / "train").is_dir()  # generated on first use
    assert len(json.loads((predictions / "predictions.json").read_text())) == 2  # the val split: 2 of 10 images
    out, predictions = chain("quickstart", tmp_path, capsys, ROOT / "configs" / "attributes" / "quickstart.yaml")
    assert "val/map" in out and (tmp_path / "data" / "shapes-attr" / "list_attr_celeba.txt").is_file()
    assert (predictions / "contact_sheet.png").is_file()


def test_missing_teacher_is_named_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"runs/celeba_teacher/checkpoints/last\.ckpt does not exist"):
        run("fit", "mobilenet_v1_celeba_distill", tmp_path, "--trainer.fast_dev_run", "1")
    assert not list(tmp_path.glob("runs/*/checkpoints/*.ckpt"))
