"""Every registered backbone meets the feature-info contract, at every output stride."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import BACKBONES, randomize
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mobiletasks import create_backbone, create_model
from mobiletasks.backbones import Backbone, FeatureInfo, MobileNetV1, MobileNetV2, dilate_


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", BACKBONES)
def test_feature_maps_match_feature_info(name: str, output_stride: int) -> None:
    net = create_backbone(name, output_stride=output_stride).eval()
    size = 128
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert list(out) == [f.name for f in net.feature_info]
    assert len(net.feature_info) >= 4
    for f in net.feature_info:
        assert f.reduction <= output_stride
        assert out[f.name].shape[1] == f.channels, f.name
        # unpadded convs (SqueezeNet) may leave a map one pixel short of size / reduction
        assert abs(out[f.name].shape[-1] - size / f.reduction) <= 1, (f.name, out[f.name].shape, f.reduction)
    assert max(f.reduction for f in net.feature_info) == min(output_stride, 16 if "squeezenet" in name else 32)


@pytest.mark.parametrize("name", BACKBONES)
def test_backward_reaches_every_parameter(name: str) -> None:
    net = create_backbone(name).train()
    out = net(torch.randn(2, 3, 64, 64))
    sum(y.mean() for y in out.values()).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", BACKBONES)
def test_frozen_stages_and_bn(name: str) -> None:
    net = create_backbone(name, frozen_stages=2, freeze_bn=False).train()
    stages = net.stages()
    frozen = {id(p) for s in stages[:2] for p in s.parameters()}
    assert frozen, "the first two stages hold parameters"
    assert all(not p.requires_grad for p in net.parameters() if id(p) in frozen)
    assert any(p.requires_grad for p in net.parameters() if id(p) not in frozen)
    bns = [m for s in stages[:2] for m in s.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    net.train()(torch.randn(2, 3, 64, 64))
    assert all(not m.training for m in bns)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns, strict=True))


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_freeze_bn_keeps_statistics(name: str) -> None:
    net = create_backbone(name, freeze_bn=True).train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_var.clone() for m in bns]
    out = net(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(b, m.running_var) for b, m in zip(before, bns, strict=True))
    sum(y.mean() for y in out.values()).backward()
    assert all(m.weight.grad is not None for m in bns)  # affine parameters still train


def test_named_taps_of_the_papers() -> None:
    v2 = create_backbone("mobilenet_v2", out_features=["layer15_expansion", "layer18", "layer19"])
    assert [(f.channels, f.reduction) for f in v2.feature_info] == [(576, 16), (320, 32), (1280, 32)]
    v1 = create_backbone("mobilenet_v1", out_features=["conv11", "conv13"])
    assert [(f.channels, f.reduction) for f in v1.feature_info] == [(512, 16), (1024, 32)]
    assert [f.name for f in create_backbone("mobilenet_v1", out_features="conv13").feature_info] == ["conv13"]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "torchvision/resnet18"])
def test_a_tap_selector_picks_what_names_pick(name: str) -> None:
    """out_features may be a callable: it gets every tap and returns the names to keep."""
    seen: list[list[FeatureInfo]] = []

    def deepest_two(info: list[FeatureInfo]) -> list[str]:
        seen.append(info)
        return [f.name for f in info[-2:]]

    selected = create_backbone(name, out_features=deepest_two)
    everything = create_backbone(name).feature_info
    assert len(seen) == 1 and seen[0] == list(everything)  # the selector saw all taps, once
    named = create_backbone(name, out_features=[f.name for f in everything[-2:]])
    assert selected.feature_info == named.feature_info == list(everything[-2:])
    assert list(selected(torch.zeros(1, 3, 64, 64))) == [f.name for f in everything[-2:]]
    with pytest.raises(ValueError, match=r"out_features \['nothing'\]: unknown or empty"):
        create_backbone(name, out_features=lambda info: ["nothing"])


@pytest.mark.parametrize("name", BACKBONES)
def test_registered_backbones_meet_the_backbone_protocol(name: str) -> None:
    net = create_backbone(name)
    assert isinstance(net, Backbone) and isinstance(net, nn.Module) and net.feature_info


def test_a_module_without_feature_info_is_no_backbone() -> None:
    with pytest.raises(ValueError, match=r"backbone 'torch\.nn\.Identity' describes no feature maps"):
        create_backbone("torch.nn.Identity")


def test_unneeded_layers_are_not_built() -> None:
    full = create_backbone("mobilenet_v2")
    pruned = create_backbone("mobilenet_v2", out_features=["layer18"])  # DeepLab's MNetV2*: no 1280 conv
    assert len(pruned.features) == len(full.features) - 1
    assert (
        sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in pruned.parameters()) == 320 * 1280 + 2 * 1280
    )


def test_classifier_splits_features_and_head() -> None:
    model = create_model("mobilenet_v2", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, 1280, 2, 2)
    assert torch.equal(model.forward_head(feats), model(x))
    assert model(x).shape == (1, 7)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("cls", [MobileNetV1, MobileNetV2])
def test_dilation_equals_generic_dilation(cls: type[nn.Module], output_stride: int) -> None:
    """Our built-in dilation and ``dilate_`` (measured on the undilated net) agree to the last bit."""
    ours = randomize(cls(num_classes=10, output_stride=output_stride))
    generic = cls(num_classes=10)
    generic.load_state_dict(ours.state_dict())
    dilate_(generic, output_stride)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x), randomize(generic).forward_features(x), atol=1e-5)


def test_generic_dilation_equals_torchvision_resnet() -> None:
    """torchvision dilates its Bottleneck ResNets natively: ``dilate_`` must give the same network.

    (Its MobileNetV3 ``dilated=True`` also dilates the de-strided conv itself; TF-slim's MobileNet and
    DeepLab, which we follow, keep the previous rate there.)"""
    native = randomize(torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]))
    ours = torchvision.models.resnet50()
    ours.load_state_dict(native.state_dict())
    dilate_(ours, 8)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(native(x), ours.eval()(x), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width_mult": 0}, "width_mult"),
        ({"width_mult": -0.5}, "width_mult"),
        ({"width_mult": "wide"}, "width_mult"),
        ({"output_stride": 4}, "output_stride must be one of"),
        ({"output_stride": 64}, "output_stride must be one of"),
        ({"out_features": ["layer99"]}, "out_features .* choose from"),
        ({"out_features": []}, "out_features"),
        ({"frozen_stages": 6}, r"frozen_stages must be in \[0, 5\]"),
        ({"frozen_stages": -1}, "frozen_stages"),
    ],
)
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_bad_arguments(name: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_backbone(name, **kwargs)


@pytest.mark.parametrize(
    "name", ["torchvision/resnet18"] + (["timm/mobilenetv1_100"] if "timm/xception41" in BACKBONES else [])
)
def test_adapters_reject_bad_output_stride(name: str) -> None:
    with pytest.raises(ValueError, match="output_stride must be one of"):
        create_backbone(name, output_stride=12)


@pytest.mark.parametrize(("kwargs", "match"), [({"num_classes": 0}, "num_classes"), ({"dropout": 1.5}, "dropout")])
def test_bad_classifier_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("mobilenet_v2", **kwargs)


@settings(max_examples=20, deadline=None)
@given(
    height=st.integers(33, 161),
    width=st.integers(33, 161),
    output_stride=st.sampled_from([8, 16, 32]),
    width_mult=st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.4]),
    v1=st.booleans(),
)
def test_any_resolution_and_width(height: int, width: int, output_stride: int, width_mult: float, v1: bool) -> None:
    """The resolution multiplier is the input size: any size gives maps of ceil(size / reduction)."""
    cls = MobileNetV1 if v1 else MobileNetV2
    net = cls(features_only=True, width_mult=width_mult, output_stride=output_stride).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, height, width))
    for f in net.feature_info:
        assert out[f.name].shape[1:] == (f.channels, -(-height // f.reduction), -(-width // f.reduction))


def test_network_that_cannot_be_dilated_says_so() -> None:
    with pytest.raises(ValueError, match=r"torchvision/inception_v3 cannot run at output_stride=16.*output_stride=32"):
        create_backbone("torchvision/inception_v3", output_stride=16)


def test_out_features_needs_features_only() -> None:
    with pytest.raises(ValueError, match="out_features needs features_only=True"):
        create_model("mobilenet_v2", out_features=["layer19"])
