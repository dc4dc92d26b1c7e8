"""``mobiletasks fit|validate|predict`` on every shipped segmentation config, shrunk by overrides, on voc128,
the coco128 semantic masks (the real files, or their synthetic stand-ins) and the generated shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from data_trees import DataTrees
from PIL import Image

from mobiletasks.cli import main
from mobiletasks.data import VOC_CLASSES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "segmentation"

SMALL = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
SMALL += ["--data.init_args.num_workers", "0", "--data.init_args.crop_size", "96"]


def voc_args(trees: DataTrees) -> list[str]:
    return ["--data.init_args.root", str(trees.voc128), "--data.init_args.train_split", "train"]


DATA_ARGS: dict[str, Callable[[DataTrees], list[str]]] = {
    "deeplabv3_mobilenet_v2_voc": voc_args,
    "deeplabv3_mobilenet_v2_aspp_voc": voc_args,
    "deeplabv3_mobilenet_v2_os8_mf_voc": lambda trees: [*voc_args(trees), "--model.init_args.scales", "[0.75, 1.0]"],
    "deeplabv3_mobilenet_v1_voc": voc_args,
    "quickstart": lambda trees: ["--data.init_args.num_images", "10", "--data.init_args.image_size", "96"],
}
STEPS = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0"]
STEPS += ["--trainer.val_check_interval", "2", "--trainer.check_val_every_n_epoch", "null"]


def run(command: str, config: Path, *extra: str) -> int:
    return main([command, "--config", str(config), *SMALL, *extra])


def test_every_config_is_exercised() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(DATA_ARGS)


@pytest.mark.parametrize("name", sorted(DATA_ARGS))
def test_fit_fast_dev_run(name: str, trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("fit", CONFIGS / f"{name}.yaml", *DATA_ARGS[name](trees), "--trainer.fast_dev_run", "1") == 0


def chain(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *data: str) -> str:
    """fit two steps (validating), then validate and predict from the last checkpoint; validate's output."""
    assert run("fit", config, *data, *STEPS) == 0
    (last,) = tmp_path.glob("runs/**/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    capsys.readouterr()
    assert run("validate", config, *data, "--ckpt_path", str(last), "--trainer.limit_val_batches", "2") == 0
    out = capsys.readouterr().out
    assert run("predict", config, *data, "--ckpt_path", str(last), "--trainer.limit_predict_batches", "2") == 0
    return out + str(checkpoint["hyper_parameters"])


def test_voc_checkpoint_validate_predict(
    trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = chain(CONFIGS / "deeplabv3_mobilenet_v2_voc.yaml", tmp_path, capsys, *voc_args(trees))
    assert "val/miou" in out and "val/pixel_acc" in out and "'num_classes': 21" in out
    predictions = tmp_path / "runs" / "deeplabv3_mobilenet_v2_voc" / "predictions"
    masks = sorted((predictions / "masks").rglob("*.png"))  # the image's path under the VOCdevkit root, kept
    assert len(masks) == 4 and all(p.parent.name == "JPEGImages" for p in masks)  # two batches of two
    for path in masks:  # palette PNGs of class indices at the image's own size
        mask, image = Image.open(path), Image.open(trees.voc128 / "VOC2012/JPEGImages" / f"{path.stem}.jpg")
        assert mask.mode == "P" and mask.size == image.size
    assert len(list((predictions / "overlays").rglob("*.png"))) == 4
    records = json.loads((predictions / "predictions.json").read_text())
    assert [r["mask"] for r in records] == [p.relative_to(predictions).as_posix() for p in masks]
    voc = {"background", *VOC_CLASSES}
    assert all(r["file_name"].startswith("VOC2012/JPEGImages/") and set(r["classes"]) <= voc for r in records)


def test_coco_semantic_masks(
    trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((CONFIGS / "deeplabv3_mobilenet_v2_voc.yaml").read_text())
    config["data"] = {
        "class_path": "mobiletasks.data.COCOSegmentationDataModule",
        "init_args": {"root": str(trees.coco128)},  # semantic/ masks mapped to the 20 VOC classes
    }
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(config))
    out = chain(path, tmp_path, capsys)
    assert "val/miou" in out and "'num_classes': 21" in out
