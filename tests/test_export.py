"""The backbones export to ONNX and run in onnxruntime with the same outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize

from mobiletasks import create_backbone, create_model

ort = pytest.importorskip("onnxruntime")


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path, outputs: list[str]) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"], output_names=outputs)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})


def test_backbone_to_onnx(tmp_path: Path) -> None:
    net = randomize(create_backbone("mobilenet_v2", output_stride=16, out_features=["layer15_expansion", "layer19"]))
    x = torch.randn(1, 3, 128, 128)
    got = _export(net, x, tmp_path / "v2.onnx", [f.name for f in net.feature_info])
    with torch.no_grad():
        want = list(net(x).values())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


def test_classifier_to_onnx(tmp_path: Path) -> None:
    model = randomize(create_model("mobilenet_v1", width_mult=0.5, num_classes=40))
    x = torch.randn(1, 3, 128, 128)
    (got,) = _export(model, x, tmp_path / "v1.onnx", ["logits"])
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_optimize_for_inference_keeps_outputs(name: str) -> None:
    from mobiletasks import optimize_for_inference

    model = randomize(create_model(name, num_classes=10))
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-4, rtol=1e-4
        )


def test_fuse_needs_eval_mode() -> None:
    from mobiletasks import fuse_bn_

    with pytest.raises(ValueError, match="eval mode"):
        fuse_bn_(create_model("mobilenet_v2").train())
