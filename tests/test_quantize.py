"""Static int8 quantization (``mobiletasks.deploy.quantize``): for every task the int8 file gives what the float
file gives, within int8's error; the network is quantized and the post-processing is not; the metadata travels;
bad calibration input fails with a clear message."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import calibrate, randomize
from PIL import Image
from torch import nn
from torchvision.ops import box_iou

from mobiletasks import create_model
from mobiletasks.cli import main
from mobiletasks.data.synthetic import make_sample, sample_rng
from mobiletasks.deploy import OnnxPredictor, export_onnx, read_metadata
from mobiletasks.deploy.quantize import calibration_subset, quantize_int8, quantized_nodes

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SIDE = 96  # of the generated images
KINDS = ["classification", "detection", "segmentation"]
# the last convolutions (or Gemm), float with float_last: a classifier's and a segmenter's logits layer, SSDLite's
# box and class predictors on its 6 feature maps
LAST = {"classification": 1, "segmentation": 1, "detection": 12}


def _images(seed: int, count: int = 8) -> list[np.ndarray]:
    return [make_sample(sample_rng(seed, i), SIDE)[0] for i in range(count)]


def _write(images: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def steered(model: nn.Module, images: list[np.ndarray]) -> nn.Module:
    """``randomize``'s random BatchNorm, then ``calibrate``'s statistics of ``images`` with every channel's variance
    raised to at least its layer's mean: a random network whose outputs follow its input smoothly, as a trained
    one's do. With each channel's own variance the near-constant channels are scaled up and the network turns
    chaotic (2/255 of input noise leaves its top-1 on 1 to 6 of 8 images), so int8's error could not be told from
    a broken quantization's."""
    calibrate(randomize(model), torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in images]))
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.running_var.clamp_(min=float(norm.running_var.mean()))  # type: ignore[union-attr]
    return model


def _centered_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of what varies with the input: each class's mean over images (and pixels) removed."""
    axes = (0,) if a.ndim == 2 else (0, 2, 3)
    a, b = a - a.mean(axes, keepdims=True), b - b.mean(axes, keepdims=True)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(_images(seed=0), tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module", params=KINDS)
def files(request: pytest.FixtureRequest, calibration: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(kind, fp32 file, int8 file); the classifier through ``mobiletasks export --int8``."""
    kind: str = request.param
    folder = tmp_path_factory.mktemp(kind)
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    torch.manual_seed(0)
    calibration_images = _images(seed=0)
    if kind == "classification":
        weights = folder / "weights.pth"
        model = steered(create_model("mobilenet_v2", num_classes=10, width_mult=0.5), calibration_images)
        torch.save(model.state_dict(), weights)
        args = ["export", "--model", "mobilenet_v2", "num_classes=10", "width_mult=0.5", "--weights", str(weights)]
        args += ["--input-size", "64", "--class-names", ",".join("abcdefghij"), "--output", str(fp32)]
        assert main([*args, "--int8", "--calibration-images", str(calibration), "--calibration-count", "8"]) == 0
        return kind, fp32, int8
    if kind == "detection":
        model = create_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.5, size=128)
    else:
        model = create_model("deeplabv3_mobilenet_v2", num_classes=4, width_mult=0.5, aspp=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = ["x", "y", "z"] if kind == "detection" else ["bg", "x", "y", "z"]
        export_onnx(steered(model, calibration_images), fp32, input_size=SIDE, class_names=names)
    quantize_int8(fp32, int8, calibration, count=8)
    return kind, fp32, int8


def test_int8_follows_fp32(files: tuple) -> None:
    kind, fp32, int8 = files
    images = _images(seed=1)  # not the calibration images
    want, got = OnnxPredictor(fp32)(images), OnnxPredictor(int8)(images)
    # each threshold lies between int8 (measured: classification 0.907; segmentation 0.989 and 0.937; detection
    # 0.988 and 0.011) and int8 calibrated on images in [0, 255] instead of [0, 1] (0.086; 0.828 and 0.836; 0.948
    # and 0.029); 2/255 of input noise moves the float outputs by about as much as int8 does (0.984; 0.995 and
    # 0.970; 0.994 and 0.007)
    if kind == "classification":
        assert _centered_correlation(want, got) > 0.8
    elif kind == "segmentation":
        want, got = np.stack(want), np.stack(got)
        assert _centered_correlation(want, got) > 0.93
        assert np.mean(want.argmax(1) == got.argmax(1)) > 0.89  # pixels whose class agrees
    else:
        ious, score_errors = [], []
        for w, g in zip(want, got, strict=True):
            assert len(g["boxes"]) > 0
            same = torch.from_numpy(w["labels"][:10, None] == g["labels"][None])
            iou = box_iou(torch.from_numpy(w["boxes"][:10]), torch.from_numpy(g["boxes"])) * same
            ious.append(float(iou.max(1).values.mean()))  # each of the 10 best boxes' best match
            score_errors.append(float(np.abs(g["scores"][:3] - w["scores"][:3]).mean()))
        assert np.mean(ious) > 0.97
        assert np.mean(score_errors) < 0.02


def test_network_quantized_and_post_processing_float(files: tuple) -> None:
    _, fp32, int8 = files
    model = onnx.load(str(int8))
    producer = {out: node for node in model.graph.node for out in node.output}
    matrix = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    weights = {t.name: t for t in model.graph.initializer}
    for node in matrix:  # int8 weights and uint8 activations in
        activations, weight = (producer[name] for name in node.input[:2])
        assert activations.op_type == weight.op_type == "DequantizeLinear"
        assert weights[weight.input[0]].data_type == onnx.TensorProto.INT8
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size
    # onnxruntime runs each int8 convolution as one integer kernel (int8 activations would leave depthwise ones in
    # float: uint8 it is)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(int8.with_name("optimized.onnx"))
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    fused = [n for n in onnx.load(options.optimized_model_filepath).graph.node if n.op_type == "QLinearConv"]
    int8.with_name("optimized.onnx").unlink()
    assert len(fused) == sum(n.op_type == "Conv" for n in matrix)
    after = {"Softmax", "TopK", "NonMaxSuppression", "GatherND", "ScatterND"}
    for node in model.graph.node:
        if node.op_type in after:
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input)
    for output in model.graph.output:
        assert producer[output.name].op_type not in ("DequantizeLinear", "QuantizeLinear")
    assert [o.name for o in model.graph.output] == [o.name for o in onnx.load(str(fp32)).graph.output]


def test_metadata_travels(files: tuple) -> None:
    kind, fp32, int8 = files
    assert read_metadata(int8) == read_metadata(fp32)
    assert read_metadata(int8).task == kind
    raw = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    assert {p.key: p.value for p in onnx.load(str(int8)).metadata_props} == raw
    assert not list(int8.parent.glob("*.tmp")) and not list(int8.parent.glob("quantize-*"))


def test_quantized_nodes_stop_at_the_last_convolution(files: tuple) -> None:
    kind, fp32, _ = files
    model = onnx.load(str(fp32))
    ops = {node.name: node.op_type for node in model.graph.node}
    body, float_last = quantized_nodes(model), quantized_nodes(model, float_last=True)
    convs = sum(op in ("Conv", "Gemm") for op in ops.values())
    assert sum(ops[n] in ("Conv", "Gemm") for n in body) == convs
    assert sum(ops[n] in ("Conv", "Gemm") for n in float_last) == convs - LAST[kind]
    assert set(float_last) < set(body)
    # nothing before the first convolution (normalization, resize) or after the last (decoding, NMS, upsampling)
    assert not {"Softmax", "TopK", "NonMaxSuppression", "Sub", "Div", "Exp"} & {ops[n] for n in body}
    assert ops[body[-1]] in ("Conv", "Gemm")


def test_calibration_subset(tmp_path: Path) -> None:
    for i in range(10):
        folder = tmp_path / ("a" if i < 5 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").touch()
    (tmp_path / "notes.txt").touch()
    picked = calibration_subset(tmp_path, 4)
    assert [p.name for p in picked] == ["0.jpg", "3.jpg", "6.jpg", "9.jpg"]  # evenly spaced, sorted by path
    assert len(calibration_subset(tmp_path, 64)) == 10
    assert calibration_subset([tmp_path / "x.png", tmp_path / "y.png"], 1) == [tmp_path / "x.png"]
    with pytest.raises(ValueError, match="positive number"):
        calibration_subset(tmp_path, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(randomize(create_model("mobilenet_v1", num_classes=3, width_mult=0.25)), path, input_size=32)
    return path


def test_bad_calibration_input(tiny: Path, calibration: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(FileNotFoundError, match=r"calibration image folder .*missing does not exist"):
        quantize_int8(tiny, out, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        quantize_int8(tiny, out, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist; write one with `mobiletasks export`"):
        quantize_int8(tmp_path / "none.onnx", out, calibration)
    with pytest.raises(ValueError, match="calibration method"):
        quantize_int8(tiny, out, calibration, method="mean")  # type: ignore[arg-type]

    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"not a jpeg")
    out.write_bytes(b"the previous file")
    with pytest.raises(ValueError, match="none of the 3 calibration images can be read"):
        quantize_int8(tiny, out, broken)
    assert out.read_bytes() == b"the previous file"  # kept where nothing new was written

    for i in range(2):
        Image.fromarray(_images(seed=2, count=2)[i]).save(broken / f"ok{i}.png")
    with caplog.at_level(logging.WARNING, logger="mobiletasks.deploy.quantize"):
        quantize_int8(tiny, out, broken, count=5)
    assert "3 of 5 images cannot be read" in caplog.text
    assert read_metadata(out).task == "classification"
    assert not list(tmp_path.glob("*.tmp"))
