"""Export to ONNX and onnxruntime give what eager PyTorch gives, for every task, with a dynamic batch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize

from mobiletasks import create_model
from mobiletasks.cli import main
from mobiletasks.deploy import OnnxPredictor, export_onnx, read_metadata

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _export(model: torch.nn.Module, path: Path, **kwargs: object) -> OnnxPredictor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, path, **kwargs)  # type: ignore[arg-type]
    return OnnxPredictor(path)


def _same_detections(got: list[dict[str, np.ndarray]], want: list[dict[str, torch.Tensor]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert len(g["boxes"]) == len(w["boxes"])
        np.testing.assert_array_equal(g["labels"], w["labels"].numpy())
        np.testing.assert_allclose(g["scores"], w["scores"].numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g["boxes"], w["boxes"].numpy(), rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize(create_model("ssdlite_mobilenet_v2", num_classes=6, width_mult=0.5, size=160, score_thresh=0.05))


@pytest.fixture(scope="module")
def detector_onnx(detector: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> OnnxPredictor:
    path = tmp_path_factory.mktemp("onnx") / "ssdlite.onnx"
    return _export(detector, path, class_names=list("abcdef"), category_ids=[1, 2, 3, 5, 8, 13])


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 160, 160), (3, 120, 200), (2, 333, 251)])
def test_detection_onnx_gives_the_eager_detections(
    detector: torch.nn.Module, detector_onnx: OnnxPredictor, batch: int, height: int, width: int
) -> None:
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        want = detector(images)
    assert sum(len(w["boxes"]) for w in want) > 10 * batch  # enough detections to compare
    _same_detections(detector_onnx(images.numpy()), want)


def test_detection_onnx_images_of_their_own_sizes(detector: torch.nn.Module, detector_onnx: OnnxPredictor) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(90, 140), (300, 200)]]
    with torch.inference_mode():
        want = detector([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in images])
    _same_detections(detector_onnx(images), want)


def test_detection_metadata(detector_onnx: OnnxPredictor) -> None:
    info = read_metadata(detector_onnx.path)
    assert info.task == "detection" and info.input_size == (160, 160)
    assert info.class_names == list("abcdef") and info.category_ids == [1, 2, 3, 5, 8, 13]
    assert detector_onnx.max_batch is None  # dynamic batch


def test_detection_focal_without_detections(tmp_path: Path) -> None:
    """Sigmoid scores, and a threshold nothing passes: no detections in either, not padding rows."""
    model = randomize(create_model("ssdlite_mobilenet_v1", num_classes=3, width_mult=0.25, size=128, loss="focal"))
    model.score_thresh = 0.999
    predictor = _export(model, tmp_path / "focal.onnx")
    images = torch.rand(2, 3, 128, 128)
    with torch.inference_mode():
        want = model(images)
    assert all(len(w["boxes"]) == 0 for w in want)
    _same_detections(predictor(images.numpy()), want)


def test_classification_onnx_gives_the_eager_logits(tmp_path: Path) -> None:
    model = randomize(create_model("classifier", backbone="mobilenet_v1", num_classes=7, dropout=0.2))
    predictor = _export(model, tmp_path / "cls.onnx", input_size=96, class_names=[f"c{i}" for i in range(7)])
    assert predictor.task == "classification" and predictor.class_names[-1] == "c6"
    for batch in (1, 4):
        images = torch.rand(batch, 3, 96, 96)
        with torch.inference_mode():
            want = model(images).numpy()
        np.testing.assert_allclose(predictor(images.numpy()), want, rtol=1e-3, atol=1e-4)
    # uint8 images of any size: resized and center cropped as the evaluation transform does
    from mobiletasks.data.transforms import classification_eval_transform

    rng = np.random.default_rng(0)
    images_u8 = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 150), (200, 100)]]
    batch_t = torch.stack([classification_eval_transform(96)(i) for i in images_u8])
    with torch.inference_mode():
        want = model(batch_t).numpy()
    np.testing.assert_allclose(predictor(images_u8), want, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="classifier for"):
        predictor(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        predictor([np.zeros((10, 10), np.uint8)])


def test_export_refuses_what_does_not_fit(tmp_path: Path) -> None:
    model = create_model("mobilenet_v1", num_classes=3, width_mult=0.25)
    with pytest.raises(ValueError, match="2 class names"):
        export_onnx(model, tmp_path / "x.onnx", input_size=64, class_names=["a", "b"])
    with pytest.raises(ValueError, match="detection needs an SSDDetector"):
        export_onnx(model, tmp_path / "x.onnx", task="detection")
    assert not (tmp_path / "x.onnx").exists()


def test_predictor_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mobiletasks export"):
        OnnxPredictor(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match=r"bad\.onnx"):
        OnnxPredictor(tmp_path / "bad.onnx")


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v1.onnx"
    args = ["export", "--model", "mobilenet_v1", "num_classes=5", "width_mult=0.25", "--input-size", "64"]
    with pytest.warns(UserWarning, match="without trained weights"):
        assert main([*args, "--output", str(out), "--static-batch"]) == 0
    info = read_metadata(out)
    assert info.task == "classification" and info.input_size == (64, 64) and info.model == "mobilenet_v1"
    assert OnnxPredictor(out).max_batch == 1
    assert OnnxPredictor(out)(np.random.rand(3, 3, 64, 64).astype(np.float32)).shape == (3, 5)  # one by one
    before = out.stat().st_mtime_ns
    assert main([*args, "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().out and out.stat().st_mtime_ns == before
    assert main(["export", "--model", "mobilenet_v1", "width_mult", "--output", str(tmp_path / "y.onnx")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().out
    assert main(["export", "--model", "mobilenet_v1", "--int8", "--output", str(tmp_path / "z.onnx")]) == 2
    assert "--calibration-images" in capsys.readouterr().out


def test_segmentation_from_a_checkpoint(tmp_path: Path) -> None:
    """A task's checkpoint rebuilds without its pretrained files and carries the class names into the ONNX file,
    whose logits are the eager model's at any batch size and image size."""
    from mobiletasks.tasks import SegmentationTask

    task = SegmentationTask(
        model="deeplabv3_mobilenet_v2", num_classes=3, model_kwargs={"width_mult": 0.35, "aspp": False}
    )
    randomize(task.model)
    record = {**task.deploy_record(), "class_names": ["bg", "cat", "dog"], "image_size": 65}
    hparams = {
        **task.hparams,
        "_class_path": "mobiletasks.tasks.SegmentationTask",
        "pretrained": str(tmp_path / "gone.pth"),
    }
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "mobiletasks": record}, ckpt)
    out = tmp_path / "seg.onnx"
    assert main(["export", "--ckpt_path", str(ckpt), "--output", str(out)]) == 0
    predictor = OnnxPredictor(out)
    assert predictor.task == "segmentation" and predictor.class_names == ["bg", "cat", "dog"]
    for shape in [(1, 3, 65, 65), (3, 3, 97, 161)]:
        images = torch.rand(*shape)
        with torch.inference_mode():
            want = task.model(images)["out"].numpy()
        got = predictor(images.numpy())
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        top2 = np.sort(want, 1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 1e-3  # pixels without a near tie
        np.testing.assert_array_equal(got.argmax(1)[sure], want.argmax(1)[sure])
    assert main(["export", "--ckpt_path", str(tmp_path / "none.ckpt"), "--output", str(tmp_path / "n.onnx")]) == 2
