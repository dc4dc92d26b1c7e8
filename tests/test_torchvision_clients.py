"""Our backbones inside torchvision's detectors and segmenters (``mobiletasks.FPNBackbone``, ``IntermediateTaps``):
each client trains a step (finite losses, gradients reaching the backbone) and predicts the outputs torchvision
documents; frozen stages stay frozen inside the client; state dicts round-trip through the client's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.segmentation import FCN, LRASPP, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from mobiletasks import FPNBackbone, IntermediateTaps, create_model

SIZES = [(3, 128, 96), (3, 112, 128)]
DETECTORS: dict[str, tuple[Callable[..., nn.Module], set[str]]] = {  # torchvision's loss names
    "FasterRCNN": (FasterRCNN, {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}),
    "MaskRCNN": (MaskRCNN, {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}),
    "RetinaNet": (RetinaNet, {"classification", "bbox_regression"}),
    "FCOS": (FCOS, {"classification", "bbox_regression", "bbox_ctrness"}),
}
BACKBONES = {  # name, create_backbone arguments, the last tap and a stride-16 tap
    "mobilenet_v1": ({"width_mult": 0.5}, "conv13", "conv11"),
    "mobilenet_v2": ({"width_mult": 0.75}, "layer19", "layer14"),
}


def targets() -> list[dict[str, torch.Tensor]]:
    boxes = [torch.tensor([[10.0, 12.0, 60.0, 70.0]]), torch.tensor([[5.0, 20.0, 50.0, 90.0], [60, 10, 120, 50]])]
    out = []
    for (_, h, w), b in zip(SIZES, boxes, strict=True):
        masks = torch.zeros(len(b), h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(b.int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        out.append({"boxes": b, "labels": torch.arange(1, len(b) + 1), "masks": masks})
    return out


def detector(client: str, backbone: str, **kwargs: Any) -> nn.Module:
    cls, _ = DETECTORS[client]
    args, _, _ = BACKBONES[backbone]
    return cls(FPNBackbone(backbone, **{**args, **kwargs}), num_classes=3, min_size=128, max_size=128)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("client", sorted(DETECTORS))
def test_detector_trains_and_predicts(client: str, backbone: str) -> None:
    torch.manual_seed(0)
    model = detector(client, backbone)
    images = [torch.rand(s) for s in SIZES]
    model.train()
    losses = model(images, targets())
    assert set(losses) == DETECTORS[client][1]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]
    first = next(p for p in model.backbone.body.parameters())
    assert first.grad is not None and bool(first.grad.abs().sum() > 0)  # the backbone learns inside the client
    model.eval()
    with torch.inference_mode():
        outputs = model(images)
    for output, (_, h, w) in zip(outputs, SIZES, strict=True):
        n = len(output["boxes"])
        assert output["boxes"].shape == (n, 4) and output["scores"].shape == output["labels"].shape == (n,)
        if client == "MaskRCNN":
            assert output["masks"].shape == (n, 1, h, w)
        boxes = output["boxes"]
        assert bool((boxes[:, 2:] >= boxes[:, :2]).all()) and bool((boxes[:, 2] <= w).all())


def test_pyramid_levels_and_names() -> None:
    """Five maps named as torchvision's defaults read them, strides 4 to 64, from the coarsest tap of each stride."""
    backbone = FPNBackbone("mobilenet_v2", width_mult=0.5)
    assert [i.name for i in backbone.body.feature_info] == ["layer5_expansion", "layer8_expansion",
                                                             "layer15_expansion", "layer19"]  # fmt: skip
    maps = backbone(torch.rand(1, 3, 128, 128))
    assert list(maps) == ["0", "1", "2", "3", "pool"]
    assert [m.shape[-1] for m in maps.values()] == [32, 16, 8, 4, 2]
    assert all(m.shape[1] == backbone.out_channels == 256 for m in maps.values())
    dilated = FPNBackbone("mobilenet_v2", width_mult=0.5, output_stride=16)  # strides 2 to 16, then the pool
    assert [m.shape[-1] for m in dilated(torch.rand(1, 3, 128, 128)).values()] == [64, 32, 16, 8, 4]


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_segmenters(backbone: str) -> None:
    args, last, mid = BACKBONES[backbone]
    images = torch.rand(2, 3, 96, 80)
    taps = IntermediateTaps(backbone, {last: "out", mid: "aux"}, output_stride=16, **args)
    deeplab = DeepLabV3(taps, DeepLabHead(taps.channels["out"], 21), FCNHead(taps.channels["aux"], 21))
    taps = IntermediateTaps(backbone, {last: "out"}, output_stride=8, **args)
    fcn = FCN(taps, FCNHead(taps.channels["out"], 21))
    low = "conv5" if backbone == "mobilenet_v1" else "layer7"
    taps = IntermediateTaps(backbone, {low: "low", last: "high"}, **args)
    lraspp = LRASPP(taps, taps.channels["low"], taps.channels["high"], 21)
    for model in (deeplab, fcn, lraspp):
        model.train()
        out = model(images)
        loss = sum(nn.functional.cross_entropy(v, torch.zeros(2, 96, 80, dtype=torch.long)) for v in out.values())
        assert torch.isfinite(loss)
        loss.backward()
        model.eval()
        with torch.inference_mode():
            out = model(images)
        assert out["out"].shape == (2, 21, 96, 80)
    assert set(deeplab.train()(images)) == {"out", "aux"}


def test_frozen_stages_stay_frozen_in_the_client() -> None:
    torch.manual_seed(0)
    model = detector("FasterRCNN", "mobilenet_v2", frozen_stages=2)
    body = model.backbone.body
    frozen = {n: p.detach().clone() for n, p in body.named_parameters() if not p.requires_grad}
    statistics = {n: b.detach().clone() for n, b in body.named_buffers() if n.startswith(tuple(frozen_prefixes(body)))}
    assert frozen and statistics
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()  # the client's train() must not unfreeze the backbone's frozen BatchNorm
    for _ in range(2):
        optimizer.zero_grad()
        sum(model([torch.rand(s) for s in SIZES], targets()).values()).backward()  # type: ignore[union-attr]
        optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in body.named_parameters() if n in frozen)
    assert all(torch.equal(b, statistics[n]) for n, b in body.named_buffers() if n in statistics)
    moved = [n for n, p in body.named_parameters() if p.requires_grad]
    assert moved  # the later stages still train


def frozen_prefixes(body: nn.Module) -> list[str]:
    """The module names whose parameters are all frozen (their BatchNorm statistics must not move either)."""
    return [f"{name}." for name, m in body.named_modules() if name and all(not p.requires_grad for p in m.parameters())]


def test_state_dict_round_trips_through_the_client() -> None:
    torch.manual_seed(0)
    first = detector("RetinaNet", "mobilenet_v2").eval()
    torch.manual_seed(1)
    second = detector("RetinaNet", "mobilenet_v2").eval()
    second.load_state_dict(first.state_dict())  # strict: the same keys
    images = [torch.rand(s) for s in SIZES]
    with torch.inference_mode():
        a, b = first.backbone(first.transform(images)[0].tensors), second.backbone(second.transform(images)[0].tensors)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("backbone.body.") for k in first.state_dict())


def test_backbone_trained_in_a_client_loads_as_a_plain_backbone() -> None:
    """The weights a client trained come back out as ``create_backbone``'s (and go in again): the same maps."""
    from mobiletasks import create_backbone

    torch.manual_seed(0)
    model = detector("FasterRCNN", "mobilenet_v2")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(model.train()([torch.rand(s) for s in SIZES], targets()).values()).backward()  # type: ignore[union-attr]
    optimizer.step()
    plain = create_backbone(
        "mobilenet_v2", width_mult=0.75, out_features=[i.name for i in model.backbone.body.feature_info]
    )
    plain.load_state_dict(model.backbone.body.state_dict())
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        inside, outside = model.backbone.body.eval()(x), plain.eval()(x)
    assert list(inside) == list(outside) and all(torch.equal(inside[k], outside[k]) for k in inside)
    fresh = detector("FasterRCNN", "mobilenet_v2")
    fresh.backbone.body.load_state_dict(plain.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(fresh.backbone.body.state_dict().values(), plain.state_dict().values(), strict=True)
    )


def test_pretrained_weights_through_the_same_call(tmp_path: Path) -> None:
    """ImageNet weights (here: a classifier's file) load into the backbone inside the client."""
    classifier = create_model("mobilenet_v2", width_mult=0.5)
    path = tmp_path / "mobilenet_v2_050.pth"
    torch.save(classifier.state_dict(), path)
    backbone = FPNBackbone("mobilenet_v2", width_mult=0.5, pretrained=str(path))
    ours = dict(backbone.body.named_parameters())
    theirs = dict(classifier.named_parameters())
    shared = [n for n in ours if n in theirs]
    assert shared and all(torch.equal(ours[n], theirs[n]) for n in shared)


def test_any_registered_backbone() -> None:
    backbone = FPNBackbone("torchvision/resnet18")
    maps = backbone(torch.rand(1, 3, 64, 64))
    assert list(maps) == ["0", "1", "2", "3", "pool"] and maps["0"].shape == (1, 256, 16, 16)


def test_errors_name_the_fix() -> None:
    built = create_model_backbone()
    with pytest.raises(ValueError, match="no tap 'layer99'; its taps are"):
        IntermediateTaps(built, {"layer99": "out"})
    with pytest.raises(ValueError, match=r"names a tap mobilenet_v2 does not have .* e.g. \{'layer19': 'out'\}"):
        IntermediateTaps("mobilenet_v2", {"out": "layer19"})  # the mapping the wrong way round
    with pytest.raises(ValueError, match="give a dict from tap names"):
        IntermediateTaps("mobilenet_v2", ["layer19"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="given with a built backbone"):
        FPNBackbone(built, width_mult=0.5)
    with pytest.raises(ValueError, match="leave it out with out_features or a built backbone"):
        FPNBackbone(built, levels=3)
    with pytest.raises(ValueError, match="levels is 0"):
        FPNBackbone("mobilenet_v2", levels=0)
    with pytest.raises(TypeError, match="pass a registered name"):
        FPNBackbone(nn.Conv2d(3, 8, 3))  # type: ignore[arg-type]
    # dilated to stride 8, MobileNetV2 has taps at 3 strides: refused when built, not at the first forward
    with pytest.raises(ValueError, match=r"taps at only 3 strides .* keep output_stride 32 for detection"):
        FPNBackbone("mobilenet_v2", width_mult=0.5, output_stride=8)


def test_retinanet_p3_to_p7() -> None:
    """RetinaNet's paper pyramid: three taps and P6, P7 (``LastLevelP6P7``) are the five maps of its anchors."""
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = FPNBackbone("mobilenet_v2", width_mult=0.5, levels=3, extra_blocks=LastLevelP6P7(256, 256))
    model = RetinaNet(backbone, num_classes=3, min_size=128, max_size=128).eval()
    assert list(backbone(torch.rand(1, 3, 128, 128))) == ["0", "1", "2", "p6", "p7"]
    with torch.inference_mode():
        assert set(model([torch.rand(3, 128, 96)])[0]) == {"boxes", "scores", "labels"}


def create_model_backbone() -> nn.Module:
    from mobiletasks import create_backbone

    return create_backbone("mobilenet_v2", width_mult=0.5)
