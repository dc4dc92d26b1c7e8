"""LiteRT and ExecuTorch exports (``mobiletasks.deploy.litert``, ``.executorch``): for each format and task the
file gives what eager PyTorch gives (logits; detections after NMS on coco128 photos; masks on voc128 photos), the
int8 file follows the float one, the metadata travels beside the file, and ``mobiletasks export --format`` and
``mobiletasks infer`` take them; missing packages, files and metadata give errors that name the fix.

The converters are the ``mobile`` extra (``pip install "mobiletasks[mobile]"``); without them these tests skip."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import randomize
from data_trees import DataTrees
from PIL import Image
from test_quantize import _centered_correlation, _images, _write, steered
from torchvision.ops import box_iou

from mobiletasks import create_model
from mobiletasks.cli import main
from mobiletasks.data.io import read_image
from mobiletasks.deploy import load_predictor
from mobiletasks.deploy.mobile import metadata_path

HAS = {
    "litert": all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")),
    "executorch": importlib.util.find_spec("executorch") is not None,
}
SUFFIX = {"litert": ".tflite", "executorch": ".pte"}
FORMATS = [
    pytest.param(f, marks=pytest.mark.skipif(not HAS[f], reason='needs pip install "mobiletasks[mobile]"'))
    for f in ("litert", "executorch")
]


def _export(fmt: str, model: torch.nn.Module, path: Path, **kwargs: Any) -> None:
    if fmt == "litert":
        from mobiletasks.deploy.litert import export_litert as export
    else:
        from mobiletasks.deploy.executorch import export_executorch as export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, path, **kwargs)


def _photos(folder: Path, count: int) -> list[np.ndarray]:
    return [read_image(p) for p in sorted(folder.glob("*.jpg"))[:count]]


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module", params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(_images(seed=0), tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module")
def detector(trees: DataTrees) -> torch.nn.Module:
    torch.manual_seed(0)
    photos = [F.interpolate(_tensor(i)[None], size=(160, 160))[0] for i in _photos(_train(trees), 8)]
    model = create_model("ssdlite_mobilenet_v2", num_classes=6, width_mult=0.5, size=160, score_thresh=0.05)
    return steered(model, [(p.permute(1, 2, 0) * 255).byte().numpy() for p in photos])


def _train(trees: DataTrees) -> Path:
    return trees.coco128 / "images" / "train2017"


@pytest.fixture(scope="module")
def detector_files(
    fmt: str, detector: torch.nn.Module, calibration: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path | None]:
    """The float file and, for LiteRT, the int8 one (ExecuTorch lowers a detector in 30-40 s, twice for int8: its
    int8 is checked on a classifier below)."""
    folder = tmp_path_factory.mktemp(f"detector_{fmt}")
    fp32, int8 = folder / f"ssd{SUFFIX[fmt]}", folder / f"ssd.int8{SUFFIX[fmt]}"
    quantize = {"int8_path": int8, "calibration_images": calibration, "calibration_count": 8}
    _export(
        fmt,
        detector,
        fp32,
        class_names=list("abcdef"),
        category_ids=[1, 2, 3, 5, 8, 13],
        **(quantize if fmt == "litert" else {}),
    )
    return fp32, int8 if fmt == "litert" else None


def test_detection_gives_the_eager_detections_on_photos(
    detector: torch.nn.Module, detector_files: tuple[Path, Path | None], trees: DataTrees
) -> None:
    """Photos of their own sizes: the same boxes, scores and labels after NMS as the eager model."""
    photos = _photos(_train(trees), 4)
    predictor = load_predictor(detector_files[0])
    got = predictor(photos)
    with torch.inference_mode():
        want = detector([_tensor(p) for p in photos])
    assert sum(len(w["boxes"]) for w in want) > 20  # enough detections to compare
    for g, w in zip(got, want, strict=True):
        assert len(g["boxes"]) == len(w["boxes"])
        np.testing.assert_array_equal(g["labels"], w["labels"].numpy())
        np.testing.assert_allclose(g["scores"], w["scores"].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g["boxes"], w["boxes"].numpy(), rtol=1e-4, atol=2e-3)
    assert predictor.class_names == list("abcdef") and predictor.info.category_ids == [1, 2, 3, 5, 8, 13]
    batch = torch.rand(2, 3, 120, 200, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = detector(batch)
    for g, w in zip(predictor(batch.numpy()), want, strict=True):  # a float batch: one image at a time inside
        np.testing.assert_allclose(g["scores"], w["scores"].numpy(), rtol=1e-4, atol=1e-5)


def test_detection_int8_follows_fp32(detector_files: tuple[Path, Path | None], trees: DataTrees) -> None:
    if detector_files[1] is None:
        pytest.skip("ExecuTorch's int8 is checked on a classifier (test_logits_and_masks_follow_eager)")
    photos = _photos(_train(trees), 8)
    fp32, int8 = (load_predictor(p) for p in detector_files)  # type: ignore[arg-type]
    assert int8.int8 and not fp32.int8  # type: ignore[attr-defined]
    assert detector_files[1].stat().st_size < 0.45 * detector_files[0].stat().st_size  # type: ignore[union-attr]
    ious = []
    for w, g in zip(fp32(photos), int8(photos), strict=True):
        assert len(g["boxes"]) > 0
        same = torch.from_numpy(w["labels"][:10, None] == g["labels"][None])
        iou = box_iou(torch.from_numpy(w["boxes"][:10]), torch.from_numpy(g["boxes"])) * same
        ious.append(float(iou.max(1).values.mean()))  # each of the 10 best boxes' best match
    # measured 0.985 (LiteRT; ExecuTorch 0.983); onnxruntime's int8 of such a detector: 0.988, and 0.948 when
    # calibrated on images in [0, 255] instead of [0, 1] (tests/test_quantize.py)
    assert np.mean(ious) > 0.96


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_logits_and_masks_follow_eager(
    fmt: str, kind: str, calibration: Path, trees: DataTrees, tmp_path: Path
) -> None:
    """Classifier logits within tolerance; a segmenter's masks on voc128 photos as the eager model's at the export
    size (the file's fixed input), resized back to each photo's size. LiteRT's int8 file close to the float one
    ExecuTorch's int8 classifier close to the float one (its lowering takes 30-40 s a segmenter here)."""
    torch.manual_seed(0)
    images = _images(seed=0)
    fp32, int8 = tmp_path / f"m{SUFFIX[fmt]}", tmp_path / f"m.int8{SUFFIX[fmt]}"
    if kind == "classification":
        model = steered(create_model("mobilenet_v1", num_classes=10, width_mult=0.25), images)
        names = list("abcdefghij")
    else:
        model = steered(create_model("deeplabv3_mobilenet_v2", num_classes=4, width_mult=0.35, aspp=False), images)
        names = ["bg", "x", "y", "z"]
    quantize = fmt == "litert" or kind == "classification"
    options: dict[str, Any] = {"int8_path": int8, "calibration_images": calibration, "calibration_count": 8}
    _export(fmt, model, fp32, input_size=64, class_names=names, **(options if quantize else {}))
    predictor = load_predictor(fp32)
    assert predictor.task == kind and predictor.class_names == names
    if kind == "classification":
        batch = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            want = model(batch).numpy()
        np.testing.assert_allclose(predictor(batch.numpy()), want, rtol=1e-3, atol=1e-4)
        if quantize:  # measured 0.77 (LiteRT, every layer int8 up to the logits) and 0.87 (ExecuTorch, float logits
            # out; onnxruntime's int8 of a MobileNetV2, logits float too: 0.91; calibrated on images in [0, 255]
            # instead of [0, 1]: 0.09, tests/test_quantize.py)
            corr = _centered_correlation(predictor(_images(seed=1)), load_predictor(int8)(_images(seed=1)))
            assert corr > 0.6
        return
    photos = _photos(trees.voc128 / "VOC2012" / "JPEGImages", 3)
    got = predictor(photos)
    for photo, logits in zip(photos, got, strict=True):
        size = photo.shape[:2]
        with torch.inference_mode():
            x = F.interpolate(_tensor(photo)[None], size=(64, 64), mode="bilinear", align_corners=False)
            want = F.interpolate(model(x)["out"], size=size, mode="bilinear", align_corners=False)[0].numpy()
        assert logits.shape == want.shape
        top2 = np.sort(want, 0)[-2:]
        sure = top2[1] - top2[0] > 1e-3  # pixels without a near tie
        np.testing.assert_array_equal(logits.argmax(0)[sure], want.argmax(0)[sure])
    if quantize:  # measured 1.0 (a 4-class segmenter at 64 pixels)
        agree = [np.mean(a.argmax(0) == b.argmax(0)) for a, b in zip(got, load_predictor(int8)(photos), strict=True)]
        assert np.mean(agree) > 0.85  # pixels whose class agrees


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_and_infer_commands(fmt: str, tmp_path: Path, calibration: Path, capsys: pytest.CaptureFixture) -> None:
    """``export --format`` writes the file, its int8 twin and their metadata; ``infer`` predicts with it."""
    out = tmp_path / f"cls{SUFFIX[fmt]}"
    args = ["export", "--model", "mobilenet_v1", "num_classes=3", "width_mult=0.25", "--input-size", "64"]
    args += ["--class-names", "cat,dog,fox", "--format", fmt, "--output", str(out)]
    int8 = out.with_suffix(f".int8{SUFFIX[fmt]}")
    quantize = ["--int8", "--calibration-images", str(calibration), "--calibration-count", "4"]
    with pytest.warns(UserWarning, match="without trained weights"):  # ExecuTorch's int8: as the Python API's above
        assert main(args + quantize if fmt == "litert" else args) == 0
    for path, quantized in [(out, False), (int8, True)][: 2 if fmt == "litert" else 1]:
        record = json.loads(metadata_path(path).read_text())
        assert record["format"] == fmt and record["int8"] is quantized and record["task"] == "classification"
        assert record["class_names"] == ["cat", "dog", "fox"] and record["input_size"] == [64, 64]
    before = out.stat().st_mtime_ns
    assert main(args) == 2  # kept without --overwrite
    assert "--overwrite" in capsys.readouterr().out and out.stat().st_mtime_ns == before
    model = int8 if fmt == "litert" else out
    assert main(["infer", str(model), str(calibration), "--output", str(tmp_path / "pred"), "--num-workers", "0"]) == 0
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(predictions) == len(list(calibration.glob("*.png")))
    assert {entry["top_k"][0]["name"] for entry in predictions} <= {"cat", "dog", "fox"}


def test_export_refuses_what_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: Any) -> None:
    base = ["export", "--model", "mobilenet_v1", "width_mult=0.25", "--input-size", "32"]
    assert main([*base, "--format", "litert", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "m.tflite" in capsys.readouterr().out  # the name the format writes
    assert main([*base, "--format", "executorch", "--opset", "18", "--output", str(tmp_path / "m.pte")]) == 2
    assert "--opset" in capsys.readouterr().out
    detector = ["export", "--model", "ssdlite_mobilenet_v2", "num_classes=2", "width_mult=0.25", "size=96"]
    assert main([*detector, "--input-size", "128", "--output", str(tmp_path / "d.tflite")]) == 2
    assert "96x96" in capsys.readouterr().out  # the detector's own size, which its anchors were made for
    assert main([*detector, "--class-names", "a,b,c", "--output", str(tmp_path / "d.tflite")]) == 2
    assert "3 class names for a detector of 2 object classes" in capsys.readouterr().out
    assert main([*detector, "--class-names", "a,b,c", "--output", str(tmp_path / "d.onnx")]) == 2  # ONNX too
    assert "3 class names" in capsys.readouterr().out
    photo = tmp_path / "photo.png"
    Image.fromarray(_images(seed=0, count=1)[0]).save(photo)
    assert main([*base, "--calibration-images", str(tmp_path), "--output", str(tmp_path / "m.tflite")]) == 2
    assert "add --int8" in capsys.readouterr().out
    assert main([*base, "--int8", "--calibration-images", str(photo), "--output", str(tmp_path / "m.tflite")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().out
    photo.unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--int8", "--calibration-images", str(empty), "--output", str(tmp_path / "m.tflite")]) == 2
    assert str(empty) in capsys.readouterr().out
    empty.rmdir()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    assert main([*base, "--output", str(tmp_path / "m.pte")]) == 2  # the format by the suffix
    assert 'pip install "mobiletasks[mobile]"' in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_predictor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.onnx.*\.tflite.*\.pte"):
        load_predictor(tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="mobiletasks export"):
        load_predictor(tmp_path / "missing.tflite")
    (tmp_path / "lonely.pte").write_bytes(b"not a program")
    with pytest.raises(FileNotFoundError, match=r"lonely\.pte\.json"):  # the metadata file, named
        load_predictor(tmp_path / "lonely.pte")
    for text in ("[1, 2]", '{"task": "detection"}', '{"task": "detection", "input_size": 320}', "{"):
        metadata_path(tmp_path / "lonely.pte").write_text(text)
        with pytest.raises(ValueError, match=r"lonely\.pte\.json"):
            load_predictor(tmp_path / "lonely.pte")


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_model_file(fmt: str, tmp_path: Path) -> None:
    model = randomize(create_model("mobilenet_v1", num_classes=3, width_mult=0.25))
    good = tmp_path / f"good{SUFFIX[fmt]}"
    _export(fmt, model, good, input_size=32)
    with pytest.raises(ValueError, match=SUFFIX[fmt]):  # the runtime is told by the suffix
        _export(fmt, model, tmp_path / "good.onnx", input_size=32)
    with pytest.raises(ValueError, match="threads"):
        load_predictor(good, threads=0)
    other = tmp_path / f"other{SUFFIX[fmt]}"  # a metadata file of another export beside it
    other.write_bytes(good.read_bytes())
    record = {**json.loads(metadata_path(good).read_text()), "input_size": [48, 48]}
    metadata_path(other).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not from the same export"):
        load_predictor(other)
    bad = tmp_path / f"bad{SUFFIX[fmt]}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # a truncated copy
    metadata_path(bad).write_text(metadata_path(good).read_text())
    with pytest.raises(ValueError, match=r"bad\."):
        load_predictor(bad)(np.zeros((1, 3, 32, 32), np.float32))
