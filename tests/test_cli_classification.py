"""``mobiletasks fit|validate|predict`` on every shipped classification and attribute config, shrunk by
overrides, on fixtures in the datasets' official layouts (Stanford Dogs, CUB, CelebA) and the generated shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from celeba_layout import write_celeba
from official_layouts import write_cub, write_stanford_dogs
from PIL import Image

from mobiletasks.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
SMALL += ["--data.init_args.num_workers", "0", "--data.init_args.image_size", "32"]
STEPS = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0"]
STEPS += ["--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1"]
# config -> where its data comes from: a fixture writer (given the test's folder) or generated shapes (None)
DATA: dict[str, Callable[[Path], Path] | None] = {
    "classification/mobilenet_v1_stanford_dogs": write_stanford_dogs,
    "classification/mobilenet_v1_075_192_stanford_dogs": write_stanford_dogs,
    "classification/mobilenet_v1_cub": write_cub,
    "classification/quickstart": None,
    "attributes/mobilenet_v1_celeba": write_celeba,
    "attributes/mobilenet_v1_celeba_distill": write_celeba,
    "attributes/quickstart": None,
    "attributes/quickstart_distill": None,
}
# the configs that distill: the config, and run name, whose last checkpoint their YAML names as teacher
TEACHERS = {
    "attributes/mobilenet_v1_celeba_distill": ("attributes/mobilenet_v1_celeba", "celeba_teacher"),
    "attributes/quickstart_distill": ("attributes/quickstart", "attributes_quickstart"),
}
# what each config's fixture holds: (classes, images predicted = its val split)
EXPECTED = {"stanford_dogs": (3, 6), "cub": (3, 6), "celeba": (40, 2), "quickstart": (None, 2)}


def run(command: str, name: str, tmp_path: Path, *extra: str) -> int:
    write = DATA[name]
    root = tmp_path / "data" / name.split("/")[0]
    if write is not None and not root.exists():
        write(root)
    data = ["--data.init_args.num_images", "10"] if write is None else ["--data.init_args.root", str(root)]
    return main([command, "--config", str(CONFIGS / f"{name}.yaml"), *SMALL, *data, *extra])


def train_teacher(name: str, tmp_path: Path) -> None:
    teacher, run_name = TEACHERS[name]
    args = ["--trainer.logger.init_args.name", run_name, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"]
    assert run("fit", teacher, tmp_path, *args) == 0
    assert (tmp_path / "runs" / run_name / "checkpoints" / "last.ckpt").is_file()


def test_every_config_is_exercised() -> None:
    shipped = {f"{task}/{p.stem}" for task in ("classification", "attributes") for p in (CONFIGS / task).glob("*")}
    assert shipped == set(DATA)


@pytest.mark.parametrize("name", sorted(DATA))
def test_fit_fast_dev_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if name in TEACHERS:  # the distillation configs read their teacher from the teacher run's folder
        train_teacher(name, tmp_path)
    assert run("fit", name, tmp_path, "--trainer.fast_dev_run", "1") == 0


@pytest.mark.parametrize("name", sorted(DATA))
def test_fit_validate_predict(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit two steps (validating), then validate and predict from the run's last checkpoint."""
    monkeypatch.chdir(tmp_path)
    if name in TEACHERS:
        train_teacher(name, tmp_path)
    assert run("fit", name, tmp_path, *STEPS) == 0
    run_name = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["trainer"]["logger"]["init_args"]["name"]
    last = tmp_path / "runs" / run_name / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert run("validate", name, tmp_path, "--ckpt_path", str(last), "--trainer.limit_val_batches", "2") == 0
    out = capsys.readouterr().out
    assert run("predict", name, tmp_path, "--ckpt_path", str(last), "--trainer.limit_predict_batches", "3") == 0
    hyper = torch.load(last, weights_only=True)["hyper_parameters"]
    classes, images = next(v for k, v in EXPECTED.items() if k in name)
    assert hyper["num_classes"] == (classes or (5 if name.startswith("classification") else 9))
    predictions = last.parents[1] / "predictions"
    results = json.loads((predictions / "predictions.json").read_text())
    assert len(results) == images
    assert Image.open(predictions / "contact_sheet.png").size[0] > 0
    if name.startswith("classification"):
        assert "val/top1" in out and ("val/top5" in out) == (hyper["num_classes"] >= 5)
        top = results[0]["top_k"]
        assert len(top) == min(5, hyper["num_classes"]) and top[0]["score"] >= top[-1]["score"]
    else:
        assert "val/map" in out and "val/accuracy" in out
        assert len(results[0]["probabilities"]) == hyper["num_classes"]
    if name in TEACHERS:  # no label entered the loss, and the teacher stays out of the student's checkpoint
        (metrics,) = last.parents[1].glob("version_0/metrics.csv")
        header = metrics.read_text().splitlines()[0]
        assert hyper["alpha"] == 0.0 and "train/soft_loss" in header and "train/hard_loss" not in header
        assert not any(k.startswith("teacher") for k in torch.load(last, weights_only=True)["state_dict"])


def test_missing_teacher_is_named_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"runs/celeba_teacher/checkpoints/last\.ckpt does not exist"):
        run("fit", "attributes/mobilenet_v1_celeba_distill", tmp_path, "--trainer.fast_dev_run", "1")
    assert not list(tmp_path.glob("runs/*/checkpoints/*.ckpt"))
