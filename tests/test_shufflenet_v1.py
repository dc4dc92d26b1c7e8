"""ShuffleNet V1 (Zhang et al. 2017): the paper's complexity tables, the channel shuffle, taps, output strides, ONNX
export, and the detector, segmenter and classifier built on it."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize
from torch import nn

from mobiletasks import create_backbone, create_model, model_summary
from mobiletasks.backbones import dilate_
from mobiletasks.backbones.shufflenet_v1 import GROUPS, ChannelShuffle, ShuffleNetV1, ShuffleUnit, stage_channels

# paper Table 1: output channels of Stage2, Stage3, Stage4 for each number of groups (ShuffleNet 1x)
TABLE_1 = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}

# (width, groups, MFLOPs as printed, params in M as printed or None, source); ImageNet classifiers, 1000 classes,
# 224x224. The papers' FLOPs are multiply-adds (paper section 4), our MACs; params count BatchNorm too, as
# Megvii's README and mmpretrain do (Megvii's classifier has no bias: 1000 parameters, below the precision).
COMPLEXITY = [
    (1.0, 1, "143", None, "paper Table 1"),
    (1.0, 2, "140", None, "paper Table 1"),
    (1.0, 3, "137", "1.9", "paper Table 1; Megvii README 1.9M"),
    (1.0, 4, "133", None, "paper Table 1"),
    (1.0, 8, "137", "2.4", "paper Table 1; Megvii README 2.4M"),
    (0.5, 1, "38", None, "paper Table 2, 0.5x row"),
    (0.5, 2, "38", None, "paper Table 2, 0.5x row"),
    (0.5, 3, "38", "0.7", "paper Table 2, 0.5x row; Megvii README"),
    (0.5, 4, "38", None, "paper Table 2, 0.5x row; Table 5, 0.5x (g = 4)"),
    (0.5, 8, "40", "1.0", "Megvii README 0.5x (group=8) (paper Table 2's row prints 38 for every g)"),
    (0.25, 4, "13", None, "paper Table 2, 0.25x row"),
    (0.25, 8, "13", None, "paper Table 2, 0.25x row"),
    (1.5, 3, "292", "3.4", "paper Table 5; Megvii README"),
    (1.5, 8, "290", "4.3", "Megvii README"),
    (2.0, 3, "524", "5.4", "paper Table 5; Megvii README"),
    (2.0, 8, "522", "6.5", "Megvii README"),
]


def close(ours: float, printed: str, rel: float = 0.05) -> bool:
    """Within ``rel`` of the printed figure, or within its printed precision (1.87M prints as "1.9")."""
    value = Decimal(printed)
    half_unit = Decimal(1).scaleb(value.as_tuple().exponent) / 2  # type: ignore[arg-type]
    return abs(Decimal(ours) - value) <= max(value * Decimal(rel), half_unit)


@pytest.mark.parametrize(("width", "groups", "printed", "params", "source"), COMPLEXITY)
def test_complexity_tables(width: float, groups: int, printed: str, params: str | None, source: str) -> None:
    s = model_summary(create_model("shufflenet_v1", groups=groups, width_mult=width), 224)
    assert close(s.macs / 1e6, printed), f"{s.macs / 1e6:.1f}M MACs vs {printed}M ({source})"
    if params is not None:
        assert close(s.params / 1e6, params), f"{s.params / 1e6:.3f}M params vs {params}M ({source})"


def test_parameters_as_mmpretrain() -> None:
    """mmpretrain's ShuffleNetV1 1.0x (group=3), the same layout with a biased classifier: 1.87M parameters."""
    s = model_summary(create_model("shufflenet_v1", groups=3), 224)
    assert round(s.params / 1e6, 2) == 1.87 and s.params_no_norm < s.params


def test_the_smallest_widths_below_table_2() -> None:
    """Table 2 prints one complexity per row, 13 MFLOPs for every g at 0.25x, and states no stem width but
    "channels x s". With a 6-channel stem (24 x 0.25) g = 4 and 8 land within 5% of 13 (the test above); g = 1, 2
    and 3 come out at 11.0, 12.0 and 11.0: the rounding to multiples of 4 g adds channels only where g is larger.
    The bound documents the gap rather than hides it."""
    macs = {g: model_summary(create_model("shufflenet_v1", groups=g, width_mult=0.25), 224).macs / 1e6 for g in (1, 3)}
    assert all(10.5 < m < 11.5 for m in macs.values()), macs


def test_widths_and_rounding() -> None:
    for g, channels in TABLE_1.items():
        assert stage_channels(g) == (24, list(channels))
    # Megvii's reference widths: 0.5x and 2x for g = 3 and 8 (stem included)
    assert stage_channels(3, 0.5) == (12, [120, 240, 480]) and stage_channels(8, 0.5) == (16, [192, 384, 768])
    assert stage_channels(3, 2.0) == (48, [480, 960, 1920]) and stage_channels(8, 2.0) == (48, [768, 1536, 3072])
    for g in GROUPS:
        for width in (0.1, 0.25, 0.33, 0.5, 0.75, 1.3, 1.5, 2.0):
            stem, stages = stage_channels(g, width)
            assert stem % g == 0 and all(c % (4 * g) == 0 for c in stages), (g, width)
            assert stem >= 24 * width and all(c >= w * width for c, w in zip(stages, TABLE_1[g], strict=True))
    net = create_model("shufflenet_v1", groups=4, width_mult=0.3)
    net(torch.randn(1, 3, 64, 64))  # any width builds and runs: every grouped conv splits evenly


@pytest.mark.parametrize("groups", [2, 3, 4, 8])
@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_shuffle_is_the_papers_permutation(groups: int, channels_last: bool) -> None:
    """Section 3.1: the channels as (g, n), transposed, flattened: output j is input (j % g) * n + j // g; the
    permutation of ``torch.nn.ChannelShuffle``, in either memory layout."""
    channels, n = 6 * groups, 6
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).repeat(2, 1, 3, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = ChannelShuffle(groups)(x)
    assert out[0, :, 0, 0].tolist() == [(j % groups) * n + j // groups for j in range(channels)]
    assert torch.equal(out, nn.ChannelShuffle(groups)(x))
    assert torch.equal(out, x.reshape(2, groups, n, 3, 3).transpose(1, 2).reshape(2, channels, 3, 3))


def test_unit_layout() -> None:
    """Fig. 2: 1x1 group conv + BN + ReLU, shuffle, 3x3 depthwise + BN, 1x1 group conv + BN; ungrouped first
    1x1 conv in Stage2's first unit (section 3.3); 3x3 average-pool shortcut in each stage's first unit."""
    net = create_model("shufflenet_v1", groups=8)
    units = [m for m in net.features if isinstance(m, ShuffleUnit)]
    assert len(units) == 16 and isinstance(net.features[1], nn.MaxPool2d)  # Conv1, MaxPool, 4 + 8 + 4 units
    firsts = [0, 4, 12]
    assert [i for i, u in enumerate(units) if u.shortcut is not None] == firsts
    assert [u.compress[0].groups for u in units] == [1] + [8] * 15
    assert all(u.expand[0].groups == 8 and len(u.depthwise) == 2 and len(u.expand) == 2 for u in units)
    assert [units[i].expand[0].out_channels for i in firsts] == [384 - 24, 768 - 384, 1536 - 768]
    assert [u.compress[0].out_channels for u in units[:5]] == [96, 96, 96, 96, 192]  # a quarter of the output
    assert isinstance(units[0].shuffle, ChannelShuffle) and units[0].shuffle.groups == 8
    assert isinstance(ShuffleNetV1(groups=1).features[2].shuffle, nn.Identity)
    assert net.classifier[1].in_features == 1536


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 5}, r"groups must be one of \(1, 2, 3, 4, 8\) \(ShuffleNet paper, Table 1\), got 5"),
        ({"groups": 0}, "groups must be one of"),
        ({"groups": "3"}, "groups must be one of"),
        ({"groups": True}, "groups must be one of"),
        ({"width_mult": 0}, r"width_mult must be a number in \(0, 4\], got 0 \(the ShuffleNet paper uses 0.25 to 2\)"),
        ({"width_mult": -0.5}, "width_mult"),
        ({"width_mult": 4.5}, "width_mult"),
        ({"width_mult": "wide"}, "width_mult"),
        ({"output_stride": 4}, "output_stride must be one of"),
        ({"out_features": ["conv1"]}, r"out_features \['conv1'\]: unknown or empty; choose from \['maxpool'"),
        ({"frozen_stages": 6}, r"frozen_stages must be in \[0, 5\]"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_backbone("shufflenet_v1", **kwargs)
    if "out_features" not in kwargs:
        with pytest.raises(ValueError, match=match):
            create_model("shufflenet_v1", **kwargs)


@pytest.mark.parametrize("groups", GROUPS)
def test_taps(groups: int) -> None:
    net = create_backbone("shufflenet_v1", groups=groups).eval()
    c2, c3, c4 = TABLE_1[groups]
    expected = [("maxpool", 24, 4), ("stage2", c2, 8), ("stage3", c3, 16), ("stage4", c4, 32)]
    assert [(f.name, f.channels, f.reduction) for f in net.feature_info] == expected
    with torch.no_grad():
        out = net(torch.randn(1, 3, 96, 128))
    assert [(k, tuple(v.shape)) for k, v in out.items()] == [(n, (1, c, 96 // r, 128 // r)) for n, c, r in expected]
    assert len(net.stages()) == 5  # Conv1, MaxPool, Stage2, Stage3, Stage4


def test_only_the_layers_of_the_taps_are_built() -> None:
    pruned = create_backbone("shufflenet_v1", out_features=["stage3"])
    assert len(pruned.features) == 2 + 4 + 8 and [f.name for f in pruned.feature_info] == ["stage3"]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_strides(output_stride: int) -> None:
    net = create_backbone("shufflenet_v1", groups=2, width_mult=0.5, output_stride=output_stride).eval()
    assert [f.reduction for f in net.feature_info] == [min(r, output_stride) for r in (4, 8, 16, 32)]
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert [v.shape[-1] for v in out.values()] == [64 // f.reduction for f in net.feature_info]
    firsts = [m for m in net.features if isinstance(m, ShuffleUnit) and m.shortcut is not None]
    # the first unit of stages 2-4: pool and depthwise conv lose their stride together
    strides = [(u.shortcut.stride, u.depthwise[0].stride[0]) for u in firsts]  # type: ignore[union-attr]
    kept = {8: 1, 16: 2, 32: 3}[output_stride]
    assert strides == [(2, 2)] * kept + [(1, 1)] * (3 - kept)
    last = net.features[-1]
    assert last.depthwise[0].dilation[0] == 32 // output_stride


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_equals_generic_dilation(output_stride: int) -> None:
    """Our dilation and ``dilate_`` (measured on the undilated net, pools included) give the same network."""
    ours = randomize(ShuffleNetV1(num_classes=10, groups=3, width_mult=0.5, output_stride=output_stride))
    generic = ShuffleNetV1(num_classes=10, groups=3, width_mult=0.5)
    generic.load_state_dict(ours.state_dict())
    dilate_(generic, output_stride)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), randomize(generic).forward_features(x))


def test_classifier_to_onnx(tmp_path: Path) -> None:
    """Through ``export_onnx`` (the ``torch.export`` based exporter, which translates ``nn.ChannelShuffle``)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from mobiletasks.deploy import OnnxPredictor, export_onnx

    model = randomize(create_model("shufflenet_v1", groups=3, width_mult=0.25, num_classes=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, tmp_path / "shufflenet.onnx", input_size=64)
    predictor = OnnxPredictor(tmp_path / "shufflenet.onnx")
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        want = model(images).numpy()
    np.testing.assert_allclose(predictor(images.numpy()), want, rtol=1e-3, atol=1e-4)


def test_classifier_to_onnx_with_the_torchscript_exporter(tmp_path: Path) -> None:
    """The reshape-transpose shuffle exports with ``dynamo=False`` too (``nn.ChannelShuffle`` would not)."""
    ort = pytest.importorskip("onnxruntime")
    model = randomize(create_model("shufflenet_v1", groups=8, width_mult=0.25, num_classes=5))
    images = torch.rand(2, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (images,), str(tmp_path / "ts.onnx"), dynamo=False, input_names=["images"])
    (got,) = ort.InferenceSession(str(tmp_path / "ts.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy()}
    )
    with torch.no_grad():
        np.testing.assert_allclose(got, model(images).numpy(), rtol=1e-3, atol=1e-4)


def test_optimize_for_inference_keeps_outputs() -> None:
    from mobiletasks import optimize_for_inference

    model = randomize(create_model("shufflenet_v1", groups=3, width_mult=0.5, num_classes=10))
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-4, rtol=1e-4
        )


SMALL = {"groups": 3, "width_mult": 0.25}


def test_ssdlite_on_shufflenet() -> None:
    torch.manual_seed(0)
    model = create_model("ssdlite", backbone="shufflenet_v1", backbone_kwargs=SMALL, num_classes=3, size=128)
    assert [(f.name, f.reduction) for f in model.backbone.body.feature_info] == [("stage3", 16), ("stage4", 32)]
    assert model.backbone.out_channels[:2] == [120, 240]
    boxes = torch.tensor([[10.0, 20.0, 60.0, 90.0], [40.0, 30.0, 120.0, 100.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 2])}, {"boxes": boxes[:1], "labels": torch.tensor([1])}]
    losses = model.train()([torch.rand(3, 128, 128) for _ in range(2)], targets)
    sum(losses.values()).backward()
    first_conv = next(m for m in model.backbone.body.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    with torch.inference_mode():
        (det,) = model.eval()([torch.rand(3, 100, 140)])
    assert det["boxes"].shape == (len(det["scores"]), 4)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplabv3_on_shufflenet(output_stride: int) -> None:
    torch.manual_seed(0)
    model = create_model(
        "deeplabv3", backbone="shufflenet_v1", backbone_kwargs=SMALL, num_classes=4, output_stride=output_stride
    )
    assert [(f.name, f.reduction) for f in model.backbone.feature_info] == [("stage4", output_stride)]
    out = model.train()(torch.rand(2, 3, 67, 93))["out"]
    assert out.shape == (2, 4, 67, 93)
    out.logsumexp(1).mean().backward()
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    with torch.inference_mode():
        assert model.eval()(torch.rand(1, 3, 64, 64))["out"].shape == (1, 4, 64, 64)


@pytest.mark.parametrize("name", ["classifier", "shufflenet_v1"])
def test_classifiers(name: str) -> None:
    torch.manual_seed(0)
    kwargs = {"backbone": "shufflenet_v1", "backbone_kwargs": SMALL} if name == "classifier" else SMALL
    model = create_model(name, num_classes=3, **kwargs)
    logits = model.train()(torch.rand(2, 3, 64, 64))
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.inference_mode():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_classifier_splits_features_and_head() -> None:
    model = create_model("shufflenet_v1", groups=8, width_mult=0.5, num_classes=7).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 768, 2, 2)
        assert torch.equal(model.forward_head(features), model(x))
