"""EffNet (arXiv 1801.06434): the paper's Table 1 and Table 2 rows, the block's structure, taps, output strides,
ONNX export, and the detection, segmentation and classification models on it.

The paper's numbers, as its Table 1 (data flow of the CIFAR-10 networks) and Table 2 (CIFAR-10) print them: EffNet
11.4 million FLOPs; MobileNet 5.8 (both tables as reproduced in arthurdouillard.github.io's "3 small but powerful
convolutional networks"). The paper counts a multiply-add as two FLOPs: Table 1's MobileNet column comes to 5.8
that way (checked below), so its FLOPs are twice our MACs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize
from torch import nn

from mobiletasks import create_backbone, create_model, model_summary
from mobiletasks.backbones.effnet import EffNet, EffNetBlock

# EffNet paper, Table 1, EffNet column: "Floats Out" of each layer at a 32x32x3 input
TABLE1_EFFNET = [
    ("1x1x32", 32768),
    ("dw 1x3 + 1d mp", 16384),
    ("dw 3x1", 16384),
    ("2x1x64 + 1d stride", 16384),
    ("1x1x64", 16384),
    ("dw 1x3 + 1d mp", 8192),
    ("dw 3x1", 8192),
    ("2x1x128 + 1d stride", 8192),
    ("1x1x128", 8192),
    ("dw 1x3 + 1d mp", 4096),
    ("dw 3x1", 4096),
    ("2x1x256 + 1d stride", 4096),
    ("Fully Connected", 10),
]


def cifar(**kwargs: object) -> EffNet:
    model = create_model("effnet", variant="cifar", num_classes=10, **kwargs)
    assert isinstance(model, EffNet)
    return model


def test_table1_data_flow() -> None:
    model = cifar().eval()
    floats: list[int] = []
    watched = [m for b in model.features for m in (b.squeeze, b.pool, b.dw_col, b.expand)] + [model.classifier]
    hooks = [m.register_forward_hook(lambda m, i, o: floats.append(o[0].numel())) for m in watched]
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert floats == [n for _, n in TABLE1_EFFNET]
    assert model.default_input_size == 32 and model.classifier[1].in_features == 4 * 4 * 256


def test_table2_flops() -> None:
    """Table 2: EffNet 11.4 million FLOPs on CIFAR-10; ours 11.28 (5.64M MACs), within 5%."""
    s = model_summary(cifar(), 32)
    assert 2 * s.macs / 1e6 == pytest.approx(11.4, rel=0.05)
    assert s.macs == 5_640_192  # sum of Table 1's layers: 1x1, 1x3, 3x1 and 2x1 convs and the 4096 x 10 layer
    assert s.params_no_norm == 148_906  # the paper prints no parameter count for it


def test_table1_mobilenet_column_sets_the_flops_convention() -> None:
    """Table 1's MobileNet column, built as printed, has the floats it prints and 5.8 million FLOPs (Table 2) when a
    multiply-add counts as two: the convention behind the 11.4 above."""
    mobilenet = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.MaxPool2d(2),  # 3x3x64 + mp
        nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64), nn.Conv2d(64, 128, 1),  # dw 3x3 + stride, 1x1x128
        nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=128), nn.Conv2d(128, 256, 1),
        nn.Flatten(), nn.Linear(4096, 10),
    )  # fmt: skip
    x, floats = torch.rand(1, 3, 32, 32), []
    for layer in mobilenet:
        x = layer(x)
        floats.append(x.numel())
    assert [floats[i] for i in (1, 2, 3, 4, 5, 7)] == [16384, 4096, 8192, 2048, 4096, 10]  # as Table 1 prints
    assert round(2 * model_summary(mobilenet, 32).macs / 1e6, 1) == 5.8


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_spatially_separable_no_3x3_kernel(variant: str) -> None:
    model = create_model("effnet", variant=variant, width_mult=0.25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {m.kernel_size for m in convs} == {(1, 1), (1, 3), (3, 1), (2, 1)}
    for conv in convs:  # the 1x3 and 3x1 convs are depthwise; 1x1 and 2x1 mix channels
        depthwise = conv.kernel_size in ((1, 3), (3, 1))
        assert (conv.groups == conv.in_channels == conv.out_channels) == depthwise
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == len(model.features) and all(p.kernel_size == (1, 2) for p in pools)
    strided = [m.stride for m in convs if m.kernel_size == (2, 1)]
    assert strided == [(2, 1)] * len(model.features)  # the second, one-dimensional half of the downsampling


def test_taps() -> None:
    net = create_backbone("effnet")
    assert [(f.name, f.channels, f.reduction) for f in net.feature_info] == [
        ("block1", 64, 2),
        ("block2", 128, 4),
        ("block3", 256, 8),
        ("block4", 512, 16),
        ("block5", 1024, 32),
    ]
    half = create_backbone("effnet", variant="cifar", width_mult=0.5)
    assert [(f.name, f.channels, f.reduction) for f in half.feature_info] == [
        ("block1", 32, 2),
        ("block2", 64, 4),
        ("block3", 128, 8),
    ]
    pruned = create_backbone("effnet", out_features=["block3"])  # later blocks are not built
    assert len(pruned.features) == 3 and list(pruned(torch.rand(1, 3, 40, 56))["block3"].shape) == [1, 256, 5, 7]
    assert len(net.stages()) == 5 and [len(s) for s in net.stages()] == [1] * 5


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_gives_the_maps_of_output_stride_32(output_stride: int) -> None:
    """Where a stride became dilation, the denser map sampled every 32 / output_stride pixels is the map itself."""
    reference = randomize(create_backbone("effnet"))
    dilated = create_backbone("effnet", output_stride=output_stride)
    dilated.load_state_dict(reference.state_dict())  # the same weights at every output stride
    dilated.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        want, got = reference(x), dilated(x)
    for ref, f in zip(reference.feature_info, dilated.feature_info, strict=True):
        assert f.reduction == min(ref.reduction, output_stride)
        step = ref.reduction // f.reduction
        assert got[f.name].shape[-2:] == (64 // f.reduction, 96 // f.reduction)
        torch.testing.assert_close(got[f.name][..., ::step, ::step], want[f.name], rtol=1e-4, atol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"variant must be one of \['cifar', 'imagenet'\].*got 'cifar10'"):
        create_model("effnet", variant="cifar10")
    with pytest.raises(ValueError, match="output_stride must be one of"):
        create_backbone("effnet", output_stride=4)
    with pytest.raises(ValueError, match="width_mult must be a number"):
        create_model("effnet", width_mult=0)
    with pytest.raises(ValueError, match=r"frozen_stages must be in \[0, 3\]"):
        create_backbone("effnet", variant="cifar", frozen_stages=4)
    with pytest.raises(ValueError, match="out_features needs features_only"):
        EffNet(out_features=["block1"])
    with pytest.raises(ValueError, match="an EffNet block has stride 2, or 1"):
        EffNetBlock(8, 16, stride=3)
    with pytest.raises(ValueError, match="SSD needs a backbone tap at stride 16"):
        create_model("ssdlite", backbone="effnet", backbone_kwargs={"variant": "cifar"})


def test_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")

    def run(model: nn.Module, x: torch.Tensor, name: str, outputs: list[str]) -> list[np.ndarray]:
        path = tmp_path / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"], output_names=outputs)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result: list[np.ndarray] = session.run(None, {"image": x.numpy()})
        return result

    net = randomize(create_backbone("effnet", output_stride=16, out_features=["block2", "block5"]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = list(net(x).values())
    for got, w in zip(run(net, x, "effnet.onnx", ["block2", "block5"]), want, strict=True):
        np.testing.assert_allclose(got, w.numpy(), atol=1e-4)
    model = randomize(cifar())
    x = torch.rand(2, 3, 32, 32)
    (got,) = run(model, x, "cifar.onnx", ["logits"])
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def _step(model: nn.Module, loss: torch.Tensor) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, params, strict=True))


def test_ssdlite_on_effnet() -> None:
    torch.manual_seed(0)
    model = create_model("ssdlite", backbone="effnet", num_classes=3, size=128)
    assert [f.name for f in model.backbone.body.feature_info] == ["block4", "block5"]
    assert model.backbone.out_channels[:2] == [512, 1024]
    boxes = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1])}, {"boxes": boxes + 20, "labels": torch.tensor([2])}]
    losses = model.train()([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], targets)
    _step(model, sum(losses.values()))  # type: ignore[arg-type]
    with torch.inference_mode():
        (detections,) = model.eval()([torch.rand(3, 96, 160)])
    assert detections["boxes"].shape[-1] == 4 and len(detections["labels"]) == len(detections["scores"])


def test_deeplabv3_on_effnet() -> None:
    torch.manual_seed(0)
    model = create_model("deeplabv3", backbone="effnet", num_classes=3, output_stride=16, decoder=True)
    assert [(f.name, f.reduction) for f in model.backbone.feature_info] == [("block2", 4), ("block5", 16)]
    x, masks = torch.rand(2, 3, 64, 64), torch.randint(3, (2, 64, 64))
    _step(model, nn.functional.cross_entropy(model.train()(x)["out"], masks))
    with torch.inference_mode():
        assert model.eval()(torch.rand(1, 3, 67, 93))["out"].shape == (1, 3, 67, 93)


def test_classifier_on_effnet() -> None:
    torch.manual_seed(0)
    model = create_model("classifier", backbone="effnet", num_classes=5, backbone_kwargs={"width_mult": 0.5})
    assert model.head.fc.in_features == 512
    x, labels = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    _step(model, nn.functional.cross_entropy(model.train()(x), labels))
    with torch.inference_mode():
        assert model.eval()(torch.rand(2, 3, 96, 96)).shape == (2, 5)
    paper = cifar().train()  # the paper's own network trains the same way
    _step(paper, nn.functional.cross_entropy(paper(torch.rand(4, 3, 32, 32)), labels))
