"""SSD / SSDLite models: the contract of every registered detector, and equivalence with torchvision's SSD
where our loss, anchors and post-processing are written differently."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD

from mobiletasks import create_backbone, create_model
from mobiletasks.heads.ssd import detection_taps
from mobiletasks.models.detection import SSDDetector, TFAnchorGenerator

DETECTORS = ["ssdlite_mobilenet_v2", "ssdlite_mobilenet_v1", "ssd300_mobilenet_v1", "ssdlite", "ssd"]
SIZE = 128  # small inputs keep the tests fast; every map still exists (4x4 at stride 32 ... 1x1)


def targets(*counts: int, num_classes: int = 3, size: int = SIZE, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * size * 0.6
        wh = torch.rand(n, 2, generator=g) * size * 0.35 + 4
        out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(num_classes, (n,), generator=g)})
    return out


def small(name: str, **kwargs: object) -> SSDDetector:
    model = create_model(name, num_classes=3, size=SIZE, **kwargs)
    assert isinstance(model, SSDDetector)
    return model


@pytest.mark.parametrize("name", DETECTORS)
def test_train_and_eval_contract(name: str) -> None:
    torch.manual_seed(0)
    model = small(name).train()
    images = [torch.rand(3, SIZE, SIZE) for _ in range(2)]
    losses = model(images, targets(3, 1))
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    first_conv = next(m for m in model.backbone.body.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())

    model.eval()
    with torch.inference_mode():
        detections = model([torch.rand(3, 90, 150), torch.rand(3, 200, 120)])
        batched = model(torch.rand(2, 3, 100, 100))
    assert len(detections) == 2 and len(batched) == 2
    for det, (h, w) in zip(detections, [(90, 150), (200, 120)], strict=True):
        assert det["boxes"].shape == (len(det["scores"]), 4) and det["labels"].dtype == torch.int64
        assert len(det["scores"]) <= model.detections_per_img
        # boxes in the pixels of the input image, labels 0-based object classes
        assert (det["boxes"] >= 0).all() and (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all()
        assert ((det["labels"] >= 0) & (det["labels"] < 3)).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


def test_images_without_objects_train_as_negatives() -> None:
    torch.manual_seed(0)
    model = small("ssdlite_mobilenet_v2").train()
    logits: list[torch.Tensor] = []

    def keep_logits(module: torch.nn.Module, args: object, out: dict[str, torch.Tensor]) -> None:
        out["cls_logits"].retain_grad()
        logits.append(out["cls_logits"])

    hook = model.head.register_forward_hook(keep_logits)
    losses = model([torch.rand(3, SIZE, SIZE)] * 2, targets(0, 0))
    hook.remove()
    assert losses["bbox_regression"] == 0
    assert torch.isfinite(losses["classification"]) and losses["classification"] > 0
    losses["classification"].backward()
    # each image's 3 hardest negatives (neg_to_pos_ratio, for one positive at least) train, and only they: which
    # anchors, and so which map's predictor gets the gradient, depends on the random weights
    assert (logits[0].grad.abs().sum(-1) > 0).sum(1).tolist() == [3, 3]
    branches = model.head.classification_head.module_list
    assert sum(branch[1].weight.grad.abs().sum() for branch in branches) > 0
    mixed = model([torch.rand(3, SIZE, SIZE)] * 2, targets(0, 2))
    assert all(torch.isfinite(v) for v in mixed.values())


@pytest.mark.parametrize("labels", [[3], [-1]])
def test_out_of_range_labels_are_rejected(labels: list[int]) -> None:
    model = small("ssdlite_mobilenet_v2").train()
    bad = [{"boxes": torch.tensor([[1.0, 1, 20, 20]]), "labels": torch.tensor(labels)}]
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*num_classes"):
        model([torch.rand(3, SIZE, SIZE)], bad)


def test_num_classes_excludes_background() -> None:
    with pytest.raises(ValueError, match="without background"):
        create_model("ssdlite_mobilenet_v2", num_classes=0)
    model = small("ssdlite_mobilenet_v2")
    assert model.head.classification_head.num_columns == 4  # 3 classes + background


def test_loss_matches_torchvision_when_every_image_has_objects() -> None:
    torch.manual_seed(0)
    model = small("ssdlite_mobilenet_v2").train()
    images = [torch.rand(3, SIZE, SIZE) for _ in range(3)]
    tgts = targets(2, 5, 1, seed=3)
    ours = model(images, tgts)
    torch.manual_seed(0)
    reference = small("ssdlite_mobilenet_v2").train()
    # torchvision's SSD.compute_loss on the same head, with its 1-based labels
    reference.compute_loss = SSD.compute_loss.__get__(reference)  # type: ignore[method-assign]
    theirs = SSD.forward(reference, images, [{**t, "labels": t["labels"] + 1} for t in tgts])
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])


def test_postprocessing_matches_torchvision() -> None:
    torch.manual_seed(0)
    model = small("ssdlite_mobilenet_v1", score_thresh=0.05, detections_per_img=30, topk_candidates=50).eval()
    images = ImageList(torch.zeros(3, 3, SIZE, SIZE), [(SIZE, SIZE), (SIZE - 28, SIZE), (SIZE, SIZE - 8)])
    features = list(model.backbone(images.tensors).values())
    anchors = model.anchor_generator(images, features)
    num_anchors = anchors[0].shape[0]
    head = {
        "bbox_regression": torch.randn(3, num_anchors, 4) * 0.5,
        "cls_logits": torch.randn(3, num_anchors, 4) * 3,  # peaked: some scores above the threshold
    }
    ours = model.postprocess_detections(head, anchors, images.image_sizes)
    theirs = SSD.postprocess_detections(model, head, anchors, images.image_sizes)
    assert any(len(t["scores"]) == 30 for t in theirs)  # the per-image cap is exercised
    for o, t in zip(ours, theirs, strict=True):
        assert len(o["scores"]) > 0
        torch.testing.assert_close(o["scores"], t["scores"])
        torch.testing.assert_close(o["boxes"], t["boxes"])
        torch.testing.assert_close(o["labels"], t["labels"] - 1)


def test_tf_anchors() -> None:
    gen = TFAnchorGenerator()
    assert gen.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert gen.scales == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    r2 = math.sqrt(2)
    lowest = [[0.1, 0.1], [0.2 * r2, 0.2 / r2], [0.2 / r2, 0.2 * r2]]  # (0.1, 1), (0.2, 2), (0.2, 1/2)
    torch.testing.assert_close(gen._wh_pairs[0], torch.tensor(lowest))
    # above the lowest layer, the same boxes as torchvision's DefaultBoxGenerator with ratios 2 and 3
    tv = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95, clip=False)
    for ours, theirs in zip(gen._wh_pairs[1:], tv._wh_pairs[1:], strict=True):
        key = lambda t: sorted(map(tuple, t.round(decimals=6).tolist()))  # noqa: E731
        assert key(ours) == key(theirs)
    # centers at the cells' centers, boxes in pixels of the (square) input
    maps = [torch.zeros(1, 1, n, n) for n in (4, 2, 1, 1, 1, 1)]
    boxes = gen(ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)]), maps)[0]
    assert boxes.shape == (3 * 16 + 6 * 4 + 6 * 4, 4)
    torch.testing.assert_close((boxes[0, :2] + boxes[0, 2:]) / 2, torch.tensor([16.0, 16.0]))


def test_taps_come_from_feature_info() -> None:
    assert detection_taps(create_backbone("mobilenet_v2").feature_info) == ["layer15_expansion", "layer19"]
    assert detection_taps(create_backbone("mobilenet_v1").feature_info) == ["conv11", "conv13"]
    model = small("ssdlite_mobilenet_v2")
    assert model.backbone.out_channels == [576, 1280, 512, 256, 256, 128]  # V2 paper section 6.2
    assert small("ssdlite_mobilenet_v2", width_mult=0.5).backbone.out_channels[:2] == [288, 1280]
    with pytest.raises(ValueError, match="stride 32"):
        create_model("ssdlite", backbone_kwargs={"output_stride": 16})


def test_any_backbone() -> None:
    model = create_model("ssdlite", backbone="torchvision/mobilenet_v3_small", num_classes=2, size=SIZE).eval()
    channels = [f.channels for f in model.backbone.body.feature_info]
    assert [f.reduction for f in model.backbone.body.feature_info] == [16, 32]
    assert model.backbone.out_channels == [*channels, 512, 256, 256, 128]
    with torch.inference_mode():
        assert len(model([torch.rand(3, SIZE, SIZE)])) == 1


def test_focal_loss_option() -> None:
    torch.manual_seed(0)
    model = small("ssdlite_mobilenet_v2", loss="focal").train()
    losses = model([torch.rand(3, SIZE, SIZE)] * 2, targets(2, 0))
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.inference_mode():
        scores = model([torch.rand(3, SIZE, SIZE)])[0]["scores"]
    assert (scores < 0.05).all()  # the prior: every class starts near probability 0.01
    with pytest.raises(ValueError, match="loss must be"):
        create_model("ssdlite_mobilenet_v2", loss="smooth")


def test_optimize_for_inference_keeps_detections() -> None:
    from mobiletasks import optimize_for_inference

    torch.manual_seed(0)
    model = small("ssdlite_mobilenet_v2").eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding has something to get wrong
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    image = torch.rand(3, 100, 140)
    with torch.inference_mode():
        expected, got = model([image])[0], fast([image])[0]
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=1e-4)
    got = {key: value[in_order_of(got, expected)] for key, value in got.items()}
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=1e-4)
    assert torch.equal(got["labels"], expected["labels"])


def in_order_of(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> torch.Tensor:
    """The indices that put ``got``'s detections in ``expected``'s order. Folding BatchNorm changes scores by float
    rounding, so detections whose scores tie within it (1e-4) may swap places; any other difference stays one."""
    free = list(range(len(got["scores"])))
    order = []
    for score, box, label in zip(expected["scores"], expected["boxes"], expected["labels"], strict=True):
        twins = [
            j
            for j in free
            if abs(got["scores"][j] - score) <= 1e-4 + 1e-4 * abs(score)
            and got["labels"][j] == label
            and torch.allclose(got["boxes"][j], box, atol=1e-3, rtol=1e-4)
        ]
        order.append(twins[0] if twins else free[0])  # no twin: the next one, for assert_close to report
        free.remove(order[-1])
    return torch.tensor(order, dtype=torch.int64)


def test_fine_tune_to_other_classes_keeps_a_fresh_class_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = small("ssdlite_mobilenet_v2")
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "task.ckpt")
    with pytest.warns(UserWarning, match="class head weights not loaded"):
        target = create_model("ssdlite_mobilenet_v2", num_classes=7, size=SIZE, pretrained=tmp_path / "task.ckpt")
    for key, value in source.state_dict().items():
        if not key.startswith("head.classification_head."):
            torch.testing.assert_close(target.state_dict()[key], value)  # everything else came from the file
    assert target.head.classification_head.num_columns == 8
