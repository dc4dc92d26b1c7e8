"""Users' own data, round two: files passed over or reported missing, valid inputs refused, numbers given without
meaning. Each kind with the right value, in the places of the package it can reach."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from conftest import HAS_TIMM, randomize
from user_data import coco_copy, ground_truth_results, needs_data

from mobiletasks import create_backbone, create_model
from mobiletasks.cli import main
from mobiletasks.data import COCODetection
from mobiletasks.evaluation import COCOEvaluator, VOCEvaluator, evaluate_results_file

# ------------------------------------------------------------------ valid inputs refused


def without_batch_counts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as converters from TF/Caffe and PyTorch before 0.4.1 write it."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_torchvision_weights_without_num_batches_tracked(tmp_path: Path) -> None:
    ref = randomize(torchvision.models.mobilenet_v2())
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(without_batch_counts(ref.state_dict()), path)
    torchvision.models.mobilenet_v2().load_state_dict(torch.load(path, weights_only=True))  # PyTorch accepts it
    ours = create_model("mobilenet_v2", num_classes=1000, pretrained=path).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    backbone = create_backbone("mobilenet_v2", pretrained=path)  # pretrained_backbone goes through the same
    assert backbone is not None
    detector = create_model("ssdlite_mobilenet_v2", num_classes=3, pretrained_backbone=path)
    torch.testing.assert_close(detector.backbone.body.features[0][0].weight, ref.features[0][0].weight)


@pytest.mark.skipif(not HAS_TIMM, reason="needs timm")
def test_timm_weights_without_num_batches_tracked(tmp_path: Path) -> None:
    import timm

    ref = randomize(timm.create_model("mobilenetv1_100", pretrained=False))
    path = tmp_path / "mobilenetv1_100.pth"
    torch.save(without_batch_counts(ref.state_dict()), path)
    ours = create_model("mobilenet_v1", num_classes=1000, pretrained=path).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_other_missing_keys_are_still_refused(tmp_path: Path) -> None:
    state = without_batch_counts(torchvision.models.mobilenet_v2().state_dict())
    state.pop("features.0.1.running_var")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing 1 keys \(features\.0\.1\.running_var\)"):
        create_model("mobilenet_v2", num_classes=1000, pretrained=path)


# ------------------------------------------------------------------ numbers without meaning


@needs_data
def test_empty_coco_split_is_refused(tmp_path: Path) -> None:
    def no_images(data: dict[str, Any]) -> None:
        data["images"], data["annotations"] = [], []

    images, annotations = coco_copy(tmp_path, 2, no_images)
    with pytest.raises(ValueError, match=r"instances\.json lists no images: there is nothing to train on or score"):
        COCODetection(images, annotations)

    def no_boxes(data: dict[str, Any]) -> None:
        data["annotations"] = []

    images, annotations = coco_copy(tmp_path / "b", 2, no_boxes)
    assert len(COCODetection(images, annotations)) == 2  # negatives are images too
    with pytest.raises(ValueError, match=r"lists no images with a box \(keep_empty=False"):
        COCODetection(images, annotations, keep_empty=False)


@needs_data
def test_results_with_negative_sizes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corners swapped in an xyxy-to-xywh conversion: pycocotools would score every such box a miss."""
    _, annotations = coco_copy(tmp_path, 2)
    results = ground_truth_results(annotations)
    for r in results[:2]:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x + w, y + h, -w, -h]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"2 of \d+ detections have a negative width or height.*swapped"):
        evaluate_results_file(annotations, path)
    assert main(["evaluate", "--annotations", str(annotations), "--results", str(path)]) == 2
    assert "negative width or height" in capsys.readouterr().err


@needs_data
def test_empty_results_file_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, annotations = coco_copy(tmp_path, 2)
    path = tmp_path / "results.json"
    path.write_text("[]")
    with caplog.at_level(logging.WARNING):
        assert evaluate_results_file(annotations, path)["map"] == 0.0
    assert "holds no detection" in caplog.text


def test_inverted_predicted_boxes_are_refused() -> None:
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    pred = {"boxes": torch.tensor([[10.0, 10, 0, 0]]), "labels": torch.tensor([0]), "scores": torch.ones(1)}
    with pytest.raises(ValueError, match=r"1 predicted boxes have x2 < x1 or y2 < y1"):
        VOCEvaluator(["cat"]).update([pred], [gt])
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "cat"}], "annotations": []}
    coco.createIndex()
    with pytest.raises(ValueError, match=r"image 1 \(int\): 1 predicted boxes have x2 < x1"):
        COCOEvaluator(coco).update([pred], [{"image_id": 1}])


def test_checkpoint_of_a_data_module_given_paths_loads_weights_only(tmp_path: Path) -> None:
    """Python users pass ``Path`` objects: the checkpoint must still hold plain data (weights_only=True)."""
    import lightning as L
    from celeba_layout import write_celeba

    from mobiletasks.data import CelebADataModule
    from mobiletasks.tasks import AttributeTask

    root = write_celeba(tmp_path / "celeba")
    dm = CelebADataModule(root, image_size=32, batch_size=4, num_workers=0)
    task = AttributeTask(num_classes=40, model_kwargs={"width_mult": 0.25})
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(task, datamodule=dm)
    (last,) = tmp_path.rglob("last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"]["root"] == str(root)
