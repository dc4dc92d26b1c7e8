"""``mobiletasks fit|validate|test|predict`` run on every shipped detection config, shrunk by overrides, on
coco128 / voc128 (the real files, or their synthetic stand-ins) and the generated shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from data_trees import DataTrees

from mobiletasks.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "detection"

SMALL = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
SMALL += ["--data.init_args.num_workers", "0", "--data.init_args.image_size", "128"]


def coco(trees: DataTrees) -> list[str]:
    args = ["--data.init_args.root", str(trees.coco128), "--data.init_args.train_images", "images/train2017"]
    return [*args, "--data.init_args.val_images", "images/val2017"]


def voc(trees: DataTrees) -> list[str]:
    args = ["--data.init_args.root", str(trees.voc128), "--data.init_args.train_sets", "[2012/train]"]
    return [*args, "--data.init_args.val_sets", "[2012/val]"]


def shapes(trees: DataTrees) -> list[str]:
    return ["--data.init_args.num_images", "12"]


DATA_ARGS = {
    "ssdlite_mobilenet_v2_coco": coco,
    "ssdlite_mobilenet_v1_coco": coco,
    "ssd300_mobilenet_v1_coco": coco,
    "ssdlite_mobilenet_v2_voc": voc,
    "quickstart": shapes,
}


def run(command: str, name: str, trees: DataTrees, *extra: str) -> int:
    config = CONFIGS / f"{name}.yaml"
    return main([command, "--config", str(config), *SMALL, *DATA_ARGS[name](trees), *extra])


def test_every_config_is_exercised() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(DATA_ARGS)


@pytest.mark.parametrize("name", sorted(DATA_ARGS))
def test_fit_fast_dev_run(name: str, trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("fit", name, trees, "--trainer.fast_dev_run", "1") == 0
    if name == "quickstart":  # the embedded default writes its data on first use
        assert (tmp_path / "data" / "shapes" / "annotations" / "instances_train.json").is_file()


def checkpoint_chain(
    name: str, trees: DataTrees, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """fit two steps (validating), then validate, test and predict from the last checkpoint."""
    steps = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0"]
    assert run("fit", name, trees, *steps, "--trainer.check_val_every_n_epoch", "1") == 0
    (last,) = tmp_path.glob("runs/**/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)  # plain data: no pickled code
    capsys.readouterr()
    assert run("validate", name, trees, "--ckpt_path", str(last), "--trainer.limit_val_batches", "2") == 0
    assert run("test", name, trees, "--ckpt_path", str(last), "--trainer.limit_test_batches", "1") == 0
    out = capsys.readouterr().out
    limit = ["--trainer.limit_predict_batches", "2"]
    assert run("predict", name, trees, "--ckpt_path", str(last), *limit) == 0
    return last, out + json.dumps(checkpoint["hyper_parameters"])


def test_coco_checkpoint_validate_predict(
    trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _, out = checkpoint_chain("ssdlite_mobilenet_v2_coco", trees, tmp_path, capsys)
    for key in ("val/map ", "val/map_50", "val/map_small", "val/mar_100", "test/map ", "test/mar_large"):
        assert key in out
    assert '"num_classes": 80' in out and '"image_size": 128' in out  # linked from the data module
    predictions = tmp_path / "runs" / "ssdlite_mobilenet_v2_coco" / "predictions"
    results = json.loads((predictions / "predictions.json").read_text())
    coco_ids = {
        c["id"] for c in json.loads((trees.coco128 / "annotations/instances_val2017.json").read_text())["categories"]
    }
    assert results and {r["category_id"] for r in results} <= coco_ids  # original COCO ids, not labels
    assert all(r["file_name"] == f"{r['image_id']:012d}.jpg" for r in results)  # every detection names its file
    assert len(list((predictions / "images").glob("*.png"))) == 4  # 2 batches of 2
    (val_results,) = tmp_path.glob("runs/**/val_results.json")
    assert json.loads(val_results.read_text())


def test_voc_checkpoint_validate_predict(
    trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _, out = checkpoint_chain("ssdlite_mobilenet_v2_voc", trees, tmp_path, capsys)
    assert "val/map " in out and "val/map_07" in out and '"num_classes": 20' in out
    pictures = list(tmp_path.glob("runs/ssdlite_mobilenet_v2_voc/predictions/images/VOC2012/JPEGImages/*.png"))
    assert len(pictures) == 4


def test_missing_data_is_named(trees: DataTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nowhere = ["--data.init_args.root", "nowhere", "--trainer.fast_dev_run", "1"]
    with pytest.raises(FileNotFoundError, match=r"nowhere.*set root"):
        run("fit", "ssdlite_mobilenet_v2_coco", trees, *nowhere)


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, FileNotFoundError, r"missing\.ckpt does not exist; pass --ckpt_path"),
        (b"not a checkpoint", ValueError, r"broken\.ckpt cannot be read: it is truncated, corrupt"),
        ("weights", ValueError, r"weights\.ckpt holds no 'state_dict'.*pretrained"),
    ],
)
def test_bad_checkpoints_are_named(
    content: bytes | str | None,
    error: type[Exception],
    match: str,
    trees: DataTrees,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    name = {None: "missing", "weights": "weights"}.get(content, "broken")  # type: ignore[arg-type]
    path = tmp_path / f"{name}.ckpt"
    if content == "weights":
        torch.save({"stem.weight": torch.zeros(1)}, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        run("validate", "quickstart", trees, "--ckpt_path", str(path))
    assert not (tmp_path / "data").exists()  # refused before any data was generated
