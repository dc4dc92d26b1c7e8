"""One input contract for every model: RGB float images in [0, 1], normalized inside with ``image_mean`` /
``image_std``; backbones take normalized images."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from conftest import HAS_TIMM, calibrate, randomize
from torch import nn

import mobiletasks
from mobiletasks import create_backbone, create_model
from mobiletasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalize, NormalizesInput

# a normalization that changes nothing: the same model built with it is the un-normalized path
IDENTITY = {"image_mean": (0.0, 0.0, 0.0), "image_std": (1.0, 1.0, 1.0)}
NAMESPACED = ["torchvision/mobilenet_v3_small"] + (["timm/mobilenetv1_100"] if HAS_TIMM else [])


def _normalized(x: torch.Tensor, model: Any) -> torch.Tensor:
    mean, std = torch.tensor(model.image_mean).view(3, 1, 1), torch.tensor(model.image_std).view(3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("name", mobiletasks.list_models())
def test_every_model_normalizes_inside(name: str) -> None:
    """``model(x)`` equals the same weights fed ``(x - image_mean) / image_std`` with normalization off."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = calibrate(randomize(create_model(name, num_classes=3)), x)
    assert isinstance(model, NormalizesInput)
    # MobileNetV1's reference weights (TF-slim, timm's mobilenetv1_100) take [-1, 1]; the rest ImageNet's statistics
    expected = ((0.5,) * 3, (0.5,) * 3) if name == "mobilenet_v1" else (IMAGENET_MEAN, IMAGENET_STD)
    assert (model.image_mean, model.image_std) == expected
    plain = create_model(name, num_classes=3, **IDENTITY)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain.eval()(_normalized(x, model)), rtol=0, atol=0)
        with pytest.raises(AssertionError):  # the outputs depend on the normalization: the check can fail
            torch.testing.assert_close(model(x), plain(x))


@pytest.mark.parametrize("name", NAMESPACED)
def test_library_classifiers_normalize_inside(name: str) -> None:
    """torchvision's and timm's classifiers keep their state dicts and take [0, 1] images; timm's normalize
    with the statistics of their ``pretrained_cfg``, torchvision's with ImageNet's."""
    library, _, arch = name.partition("/")
    if library == "timm":
        import timm

        ref = timm.create_model(arch)
        expected = (ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"])
    else:
        ref = torchvision.models.get_model(arch)
        expected = (IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(2, 3, 64, 64)
    model = calibrate(randomize(create_model(name, num_classes=1000, channels_last=False)), x)
    assert isinstance(model, NormalizesInput)
    assert (model.image_mean, model.image_std) == expected
    ref.load_state_dict(model.state_dict())  # strict: the same keys
    assert list(ref.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(_normalized(x, model)), rtol=0, atol=0)
        with pytest.raises(AssertionError):
            torch.testing.assert_close(model(x), ref(x))
    other = create_model(name, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    assert (other.image_mean, other.image_std) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_mobilenet_v2_normalizes_as_torchvision_is_fed() -> None:
    ours = create_model("mobilenet_v2", channels_last=False)
    x = torch.rand(2, 3, 96, 96)
    ref = calibrate(randomize(torchvision.models.mobilenet_v2()), _normalized(x, ours))
    ours.load_state_dict(ref.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref(_normalized(x, ours)), rtol=0, atol=0)
        # forward_features takes what forward takes, as timm's
        torch.testing.assert_close(ours.forward_features(x), ref.features(_normalized(x, ours)), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_backbones_take_normalized_images(name: str) -> None:
    backbone = create_backbone(name, out_features=None)
    assert isinstance(backbone.normalize, nn.Identity) and not isinstance(backbone, NormalizesInput)
    with pytest.raises(ValueError, match=r"image_mean and image_std are the classifier's.*features_only=True"):
        create_backbone(name, image_mean=(0.5, 0.5, 0.5))


def test_normalize_keeps_no_state_and_checks_its_values() -> None:
    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 2.0))
    assert norm.state_dict() == {} and (norm.image_mean, norm.image_std) == ((0.5, 0.25, 0.0), (0.5, 0.5, 2.0))
    torch.testing.assert_close(norm(torch.ones(3, 1, 1)).flatten(), torch.tensor([1.0, 1.5, 0.5]))
    assert norm.to(torch.float64)(torch.ones(1, 3, 2, 2, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"image_mean needs one value per RGB channel \(3\), got \[0.5\]"):
        Normalize((0.5,))
    with pytest.raises(ValueError, match=r"image_std must be positive per channel, got \[0.5, 0.0, 0.5\]"):
        create_model("classifier", image_std=[0.5, 0.0, 0.5])
