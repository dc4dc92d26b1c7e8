"""Mobile DeepLabV3 models: the contract of every registered segmentation model and the paper's structure."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.segmentation.deeplabv3 import ASPPConv

from mobiletasks import create_model
from mobiletasks.models.segmentation import DeepLabV3

MODELS = ["deeplabv3_mobilenet_v2", "deeplabv3_mobilenet_v1", "deeplabv3"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("output_stride", [8, 16])
def test_contract(name: str, output_stride: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, output_stride=output_stride)
    assert isinstance(model, DeepLabV3)
    model.train()
    x = torch.rand(2, 3, 67, 93)  # odd sizes: logits still come back at the input's resolution
    out = model(x)["out"]
    assert out.shape == (2, 4, 67, 93)
    out.logsumexp(1).mean().backward()
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert model.backbone.feature_info[-1].reduction == output_stride


def test_paper_structure() -> None:
    v2 = create_model("deeplabv3_mobilenet_v2", aspp=False)
    # MNetV2*: the head reads the 320-channel layer18 and the 1280 conv is not built
    assert [(f.name, f.channels) for f in v2.backbone.feature_info] == [("layer18", 320)]
    assert not any(isinstance(m, ASPPConv) for m in v2.modules())  # image pooling + 1x1 only
    with_aspp = create_model("deeplabv3_mobilenet_v2", output_stride=8)
    rates = [m[0].dilation[0] for m in with_aspp.modules() if isinstance(m, ASPPConv)]
    assert rates == [12, 24, 36]  # (6, 12, 18) doubled at output stride 8
    v1 = create_model("deeplabv3_mobilenet_v1")
    assert [(f.name, f.channels, f.reduction) for f in v1.backbone.feature_info] == [("conv13", 1024, 16)]


def test_decoder_and_any_backbone() -> None:
    model = create_model("deeplabv3", backbone="torchvision/mobilenet_v3_large", num_classes=3, decoder=True).eval()
    assert model.low_level is not None and model.backbone.feature_info[0].reduction == 4
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 64, 80))["out"].shape == (1, 3, 64, 80)


def test_normalization_is_inside() -> None:
    model = create_model("deeplabv3_mobilenet_v2", num_classes=2, aspp=False).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        mean, std = torch.tensor(model.image_mean).view(3, 1, 1), torch.tensor(model.image_std).view(3, 1, 1)
        features = model.backbone((x - mean) / std)["layer18"]
        expected = torch.nn.functional.interpolate(model.head(features), size=(32, 32), mode="bilinear")
        torch.testing.assert_close(model(x)["out"], expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="output_stride 8 or 16"):
        create_model("deeplabv3_mobilenet_v2", output_stride=32)
    with pytest.raises(ValueError, match="tap 'nope' is not a feature"):
        create_model("deeplabv3", tap="nope")
    with pytest.raises(ValueError, match="including background"):
        create_model("deeplabv3_mobilenet_v2", num_classes=0)
