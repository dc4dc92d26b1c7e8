"""Pretrained weights: torchvision's and timm's files load into ours and give the same outputs. Ours are built with
contiguous (NCHW) weights here, as the references are, so that the same kernels run and the outputs agree to the bit;
channels-last against NCHW is tests/test_fast_paths.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from conftest import HAS_TIMM, calibrate, randomize
from torchvision.models.feature_extraction import create_feature_extractor

from mobiletasks import create_backbone, create_model
from mobiletasks.contracts import ConvertsStateDict, HasClassHead, HasFeaturesOnly, HasHubFiles, HasInputSize
from mobiletasks.preprocessing import Normalize

# our classifiers take [0, 1] images and normalize inside; torchvision's and timm's networks take normalized ones
normalize = Normalize()
IMAGES = normalize(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))  # as the references see them


@pytest.fixture
def torchvision_v2(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    ref = calibrate(randomize(torchvision.models.mobilenet_v2()), IMAGES)
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_torchvision_mobilenet_v2_logits(torchvision_v2: tuple[torch.nn.Module, Path]) -> None:
    ref, path = torchvision_v2
    ours = create_model("mobilenet_v2", num_classes=1000, pretrained=path, channels_last=False).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(normalize(x)), rtol=0, atol=1e-5)


def test_same_file_into_the_backbone(torchvision_v2: tuple[torch.nn.Module, Path]) -> None:
    ref, path = torchvision_v2
    ours = create_backbone("mobilenet_v2", pretrained=path, out_features=["layer15_expansion", "layer19"]).eval()
    nodes = {"features.14.conv.0": "layer15_expansion", "features.18": "layer19"}
    expected = create_feature_extractor(ref, return_nodes=nodes)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        got, want = ours(x), expected(x)
    for key in nodes.values():
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-5)


@pytest.mark.skipif(not HAS_TIMM, reason="needs timm")
def test_timm_mobilenet_v1_logits(tmp_path: Path) -> None:
    import timm

    ref = calibrate(randomize(timm.create_model("mobilenetv1_100", pretrained=False)), IMAGES)
    path = tmp_path / "mobilenetv1_100.pth"
    torch.save(ref.state_dict(), path)
    ours = create_model("mobilenet_v1", num_classes=1000, pretrained=path, channels_last=False).eval()
    assert ours.image_mean == tuple(ref.pretrained_cfg["mean"]) == (0.5, 0.5, 0.5)  # the weights' [-1, 1] input
    assert ours.image_std == tuple(ref.pretrained_cfg["std"])
    x = torch.rand(2, 3, 192, 192)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x * 2 - 1), rtol=0, atol=1e-5)


@pytest.mark.skipif(not HAS_TIMM, reason="needs timm")
def test_timm_backbone_from_file(tmp_path: Path) -> None:
    import timm

    ref = randomize(timm.create_model("mobilenetv1_100", pretrained=False))
    path = tmp_path / "v1.pth"
    torch.save(ref.state_dict(), path)
    ours = create_backbone("timm/mobilenetv1_100", pretrained=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(list(ours(x).values())[-1], ref.forward_features(x), rtol=0, atol=1e-5)


def test_torchvision_backbone_from_file(tmp_path: Path) -> None:
    ref = randomize(torchvision.models.resnet18())
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    ours = create_backbone("torchvision/resnet18", pretrained=path).eval()
    expected = create_feature_extractor(ref, return_nodes={"layer3": "layer3", "layer4": "layer4"})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = ours(x), expected(x)
    torch.testing.assert_close(got["layer3"], want["layer3"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["layer4"], want["layer4"], rtol=0, atol=1e-5)


def test_lightning_checkpoint_layout(tmp_path: Path, torchvision_v2: tuple[torch.nn.Module, Path]) -> None:
    ref, _ = torchvision_v2
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": ref.state_dict()}, path)
    ours = create_model("mobilenet_v2", pretrained=path, channels_last=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(normalize(x)), rtol=0, atol=1e-5)


def test_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torchvision_v2: tuple[torch.nn.Module, Path]
) -> None:
    ref, path = torchvision_v2
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"mobilenet_v2-\*\.pth .*never downloads"):
        create_model("mobilenet_v2", pretrained=True)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    path.rename(tmp_path / "hub" / "checkpoints" / path.name)
    ours = create_model("mobilenet_v2", pretrained=True, channels_last=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(normalize(x)), rtol=0, atol=1e-5)


def test_new_num_classes_keeps_fresh_classifier(torchvision_v2: tuple[torch.nn.Module, Path]) -> None:
    ref, path = torchvision_v2
    with pytest.warns(UserWarning, match="class head weights not loaded.*classifier"):
        ours = create_model("mobilenet_v2", num_classes=120, pretrained=path)
    torch.testing.assert_close(ours.features[3].conv[1][0].weight, ref.features[3].conv[1][0].weight)
    assert ours.classifier[1].out_features == 120


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth does not exist"):
        create_model("mobilenet_v2", pretrained=tmp_path / "nope.pth")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read weights file .*broken\.pth"):
        create_model("mobilenet_v2", pretrained=path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.mobilenet_v2(), path)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match=r"whole_model\.pth.*tensors only"):
        create_model("mobilenet_v2", pretrained=path)


def test_foreign_file_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet18\.pth does not fit mobilenet_v2: missing \d+ keys \(features\.0\.0"):
        create_model("mobilenet_v2", pretrained=path)


def test_wrong_width_names_the_shapes(torchvision_v2: tuple[torch.nn.Module, Path]) -> None:
    _, path = torchvision_v2
    with pytest.raises(
        ValueError, match=r"shape mismatches \(features\.0\.0\.weight: file \(32, 3, 3, 3\) vs model \(16"
    ):
        create_model("mobilenet_v2", width_mult=0.5, pretrained=path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        create_model("mobilenet_v1", pretrained=path)


@pytest.mark.skipif(not HAS_TIMM, reason="needs timm (and its safetensors)")
def test_safetensors_file_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    ref = calibrate(randomize(timm.create_model("mobilenetv1_100", pretrained=False)), IMAGES)
    (tmp_path / "checkpoints").mkdir()
    save_file(ref.state_dict(), str(tmp_path / "checkpoints" / "mobilenetv1_100.ra4_e3600_r224_in1k.safetensors"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ours = create_model("mobilenet_v1", pretrained=True, channels_last=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x * 2 - 1), rtol=0, atol=1e-5)


def test_torchvision_backbone_hub_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth in .*checkpoints"):
        create_backbone("torchvision/resnet18", pretrained=True)


def test_prefixed_checkpoint_of_a_larger_model(tmp_path: Path) -> None:
    """A task checkpoint holds ``model.backbone.*`` among other keys: the backbone loads from it."""
    ref = randomize(create_backbone("mobilenet_v1", out_features=["conv13"]))
    state = {f"model.backbone.{k}": v for k, v in ref.state_dict().items()}
    state["model.head.weight"] = torch.zeros(3)
    path = tmp_path / "epoch=1.ckpt"
    torch.save({"state_dict": state}, path)
    ours = create_backbone("mobilenet_v1", out_features=["conv13"], pretrained=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["conv13"], ref(x)["conv13"], rtol=0, atol=0)


def test_models_state_the_model_contract() -> None:
    """What load_pretrained, summary and export read (mobiletasks.contracts), as each kind of model states it."""
    kinds = (HasHubFiles, ConvertsStateDict, HasClassHead, HasFeaturesOnly, HasInputSize)

    def stated(model: object) -> list[str]:
        return [kind.__name__ for kind in kinds if isinstance(model, kind)]

    v1, v2 = create_model("mobilenet_v1", width_mult=0.25), create_model("mobilenet_v2", width_mult=0.25)
    assert stated(v1) == ["HasHubFiles", "ConvertsStateDict", "HasFeaturesOnly"] and not v1.features_only
    assert stated(v2) == ["HasHubFiles", "HasFeaturesOnly"] and v2.hub_files == ("mobilenet_v2-*.pth",)
    backbone = create_backbone("mobilenet_v2", width_mult=0.25)
    assert stated(backbone) == ["HasHubFiles", "HasFeaturesOnly"] and backbone.features_only
    tv = create_backbone("torchvision/resnet18")
    assert stated(tv) == ["HasHubFiles", "ConvertsStateDict", "HasFeaturesOnly"]
    classifier = create_model("classifier", num_classes=3, backbone_kwargs={"width_mult": 0.25})
    assert stated(classifier) == ["HasClassHead"] and classifier.class_head_prefix == "head.fc."
    ssd = create_model("ssdlite_mobilenet_v1", num_classes=3, width_mult=0.25, size=96)
    assert stated(ssd) == ["HasClassHead", "HasInputSize"] and ssd.default_input_size == 96
    deeplab = create_model("deeplabv3_mobilenet_v2", num_classes=3, width_mult=0.25, aspp=False)
    assert stated(deeplab) == ["HasClassHead", "HasInputSize"] and deeplab.class_head_prefix == "head.classifier."
