"""``SegmentationEvaluator``, ``multiscale_logits`` and ``SegmentationWriter``: cases worked by hand, torchmetrics'
Jaccard index and accuracy, and VOC's own palette PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_trees import DataTrees
from PIL import Image
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.segmentation import MeanIoU

from mobiletasks.data.io import voc_palette
from mobiletasks.evaluation.segmentation import SegmentationEvaluator, multiscale_logits
from mobiletasks.tasks.writers.segmentation import SegmentationWriter


def from_confusion_matrix(matrix: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Labels and masks [1, 1, N] with ``matrix[i][j]`` pixels of class i predicted as j, in a shuffled order."""
    pairs = [(i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0))
    truth, pred = torch.tensor(pairs)[order].T
    return pred.view(1, 1, -1), truth.view(1, 1, -1)


# ---------------------------------------------------------------------------------------------------- evaluator


def test_perfect_prediction_is_one() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 5, (2, 17, 23), generator=g)
    masks[:, :3] = 255  # an ignored band
    logits = F.one_hot(masks.clamp(max=4), 5).permute(0, 3, 1, 2).float()
    logits[:, :, :3] = torch.randn(2, 5, 3, 23, generator=g)  # anything on ignored pixels
    evaluator = SegmentationEvaluator(5, ["background", "a", "b", "c", "d"])
    evaluator.update(logits, masks)
    assert evaluator.compute() == {
        "miou": 1.0,
        "pixel_acc": 1.0,
        "classes_missing": 0.0,
        **{f"iou/{n}": 1.0 for n in ("background", "a", "b", "c", "d")},
    }


def test_known_confusion_matrix() -> None:
    matrix = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]  # rows: ground truth, columns: prediction
    evaluator = SegmentationEvaluator(3)
    evaluator.update(*from_confusion_matrix(matrix))
    assert evaluator.confusion_matrix.tolist() == matrix
    stats = evaluator.compute()
    # class 0: TP 5, ground truth 5+1+0 = 6, predicted 5+2+0 = 7 -> 5 / (6 + 7 - 5) = 5/8
    # class 1: TP 3, ground truth 2+3+1 = 6, predicted 1+3+0 = 4 -> 3 / (6 + 4 - 3) = 3/7
    # class 2: TP 4, ground truth 0+0+4 = 4, predicted 0+1+4 = 5 -> 4 / (4 + 5 - 4) = 4/5
    assert stats["iou/0"] == pytest.approx(5 / 8)
    assert stats["iou/1"] == pytest.approx(3 / 7)
    assert stats["iou/2"] == pytest.approx(4 / 5)
    assert stats["miou"] == pytest.approx((5 / 8 + 3 / 7 + 4 / 5) / 3)  # 0.6179
    assert stats["pixel_acc"] == pytest.approx(12 / 16)  # diagonal 5+3+4 over 16 pixels


def test_absent_and_predicted_only_classes() -> None:
    # class 2 occurs nowhere: missing (-1), left out of the mean; class 3 is only predicted (once): IoU 0, counted
    matrix = [[2, 1, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    evaluator = SegmentationEvaluator(4, ["bg", "cat", "dog", "cow"])
    evaluator.update(*from_confusion_matrix(matrix))
    # bg: TP 2, ground truth 4, predicted 2 -> 2 / (4 + 2 - 2) = 1/2
    # cat: TP 3, ground truth 3, predicted 4 -> 3 / (3 + 4 - 3) = 3/4
    # cow: TP 0, ground truth 0, predicted 1 -> 0 / 1 = 0
    assert evaluator.compute() == pytest.approx(
        {
            "miou": (1 / 2 + 3 / 4 + 0) / 3,
            "pixel_acc": 5 / 7,
            "classes_missing": 2.0,  # dog, and cow (only predicted) never occur in the ground truth
            "iou/bg": 1 / 2,
            "iou/cat": 3 / 4,
            "iou/dog": -1.0,
            "iou/cow": 0.0,
        }
    )
    # torchmetrics' MeanIoU marks a missing class the same way (on one batch it is the whole-split value)
    preds, masks = from_confusion_matrix(matrix)
    reference = MeanIoU(num_classes=4, input_format="index", per_class=True)
    reference.update(preds, masks)
    assert reference.compute().tolist() == pytest.approx([1 / 2, 3 / 4, -1.0, 0.0])


def test_ignored_pixels_never_count() -> None:
    g = torch.Generator().manual_seed(1)
    masks = torch.randint(0, 4, (3, 20, 30), generator=g)
    ignored = torch.rand(3, 20, 30, generator=g) < 0.3
    masks[ignored] = 255
    preds = torch.randint(0, 4, (3, 20, 30), generator=g)
    evaluator = SegmentationEvaluator(4)
    evaluator.update(preds, masks)
    reference = evaluator.compute()
    assert int(evaluator.confusion_matrix.sum()) == int((~ignored).sum())

    for changed in (torch.where(ignored, (preds + 1) % 4, preds), torch.where(ignored, 0, preds)):
        other = SegmentationEvaluator(4)
        other.update(changed, masks)
        assert other.compute() == reference
    # logits too: their argmax on ignored pixels is irrelevant
    logits = F.one_hot(preds, 4).permute(0, 3, 1, 2).float()
    logits[:, 3][ignored] = 100.0
    other = SegmentationEvaluator(4)
    other.update(logits, masks)
    assert other.compute() == reference
    # an all-ignored batch adds nothing
    other.update(preds, torch.full_like(masks, 255))
    assert other.compute() == reference


def test_accumulates_over_the_split_not_per_batch() -> None:
    big_mask, big_pred = torch.zeros(1, 10, 10, dtype=torch.int64), torch.zeros(1, 10, 10, dtype=torch.int64)
    small_mask = torch.full((1, 10, 10), 255)
    small_mask[0, 0, 0] = 1  # one pixel of class 1, predicted as 0
    small_pred = torch.zeros(1, 10, 10, dtype=torch.int64)

    evaluator = SegmentationEvaluator(2)
    evaluator.update(big_pred, big_mask)
    first = evaluator.compute()["miou"]  # class 0 perfect, class 1 absent -> 1.0
    evaluator.update(small_pred, small_mask)
    stats = evaluator.compute()
    # whole split: class 0 TP 100, ground truth 100, predicted 101 -> 100/101; class 1 TP 0, ground truth 1 -> 0
    assert stats["miou"] == pytest.approx((100 / 101 + 0) / 2)
    assert stats["pixel_acc"] == pytest.approx(100 / 101)

    alone = SegmentationEvaluator(2)
    alone.update(small_pred, small_mask)
    second = alone.compute()["miou"]  # class 0 only predicted (IoU 0), class 1 missed (IoU 0) -> 0.0
    assert (first + second) / 2 == pytest.approx(0.5)  # the per-batch average differs
    assert stats["miou"] != pytest.approx(0.5)

    once = SegmentationEvaluator(2)
    once.update(torch.cat([big_pred, small_pred]), torch.cat([big_mask, small_mask]))
    assert once.compute() == stats

    evaluator.reset()
    assert evaluator.compute() == {"miou": 0.0, "pixel_acc": 0.0, "classes_missing": 2.0, "iou/0": -1.0, "iou/1": -1.0}


def test_matches_torchmetrics_on_random_data() -> None:
    g = torch.Generator().manual_seed(2)
    num_classes = 6
    evaluator = SegmentationEvaluator(num_classes)
    jaccard = MulticlassJaccardIndex(num_classes, average=None, ignore_index=255)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=255)
    for _ in range(3):
        masks = torch.randint(0, num_classes, (2, 31, 19), generator=g)
        masks[torch.rand(masks.shape, generator=g) < 0.1] = 255
        # logits that agree with the mask more often than chance, so that the IoUs differ
        logits = torch.randn(2, num_classes, 31, 19, generator=g) + 2 * F.one_hot(masks % 255, num_classes).permute(
            0, 3, 1, 2
        )
        evaluator.update(logits, masks)
        jaccard.update(logits, masks)
        accuracy.update(logits, masks)
    stats = evaluator.compute()
    expected = jaccard.compute()
    assert [stats[f"iou/{c}"] for c in range(num_classes)] == pytest.approx(expected.tolist(), abs=1e-6)
    assert stats["miou"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert stats["pixel_acc"] == pytest.approx(float(accuracy.compute()), abs=1e-6)


def test_bad_input_is_named() -> None:
    evaluator = SegmentationEvaluator(21)
    masks = torch.zeros(1, 4, 4, dtype=torch.int64)
    bad = masks.clone()
    bad[0, 1, 2] = 21
    with pytest.raises(ValueError, match=r"mask value is 21, not a class index of 0\.\.20 or ignore_index 255"):
        evaluator.update(masks, bad)
    with pytest.raises(ValueError, match=r"mask value is -22"):
        evaluator.update(masks, bad - 22)
    with pytest.raises(ValueError, match=r"predicted label value is 21"):
        evaluator.update(bad, masks)
    with pytest.raises(ValueError, match=r"logits have 20 channels"):
        evaluator.update(torch.zeros(1, 20, 4, 4), masks)
    with pytest.raises(ValueError, match=r"differ"):
        evaluator.update(torch.zeros(1, 21, 4, 5), masks)
    with pytest.raises(ValueError, match=r"integer class indices"):
        evaluator.update(masks, masks.float())
    with pytest.raises(ValueError, match=r"integer labels"):
        evaluator.update(masks.float(), masks)
    with pytest.raises(ValueError, match=r"class_names has 20 names for num_classes=21"):
        SegmentationEvaluator(21, [str(i) for i in range(20)])
    with pytest.raises(ValueError, match=r"ignore_index is 3"):
        SegmentationEvaluator(21, ignore_index=3)
    with pytest.raises(ValueError, match=r"at least 2"):
        SegmentationEvaluator(1)
    metrics = evaluator.compute()
    assert (metrics["miou"], metrics["pixel_acc"], metrics["classes_missing"]) == (
        0.0,
        0.0,
        21.0,
    )  # nothing was added by the failed updates


# ------------------------------------------------------------------------------------------------ multi-scale


class OneHotModel(nn.Module):
    """A flip- and (nearly) scale-equivariant "model": the input is a one-hot label map, the logits 10 times it."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": 10 * x}


class StridedModel(nn.Module):
    """Logits at 1/4 of the input resolution, as a network before its final upsampling."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": F.avg_pool2d(10 * x, 4, ceil_mode=True)}


def label_map(h: int, w: int) -> Tensor:
    """A left/right asymmetric map of 3 classes in large blocks: class 1 left, class 2 a square at top right."""
    labels = torch.zeros(h, w, dtype=torch.int64)
    labels[:, : w // 3] = 1
    labels[: h // 2, w // 2 : w - 4] = 2
    return labels


def test_multiscale_single_scale_equals_plain_output() -> None:
    labels = torch.randint(0, 3, (2, 21, 33), generator=torch.Generator().manual_seed(3))
    images = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    plain = OneHotModel()(images)["out"]
    assert (plain.flip(-1).argmax(1) != labels).any()  # asymmetric: a mirrored output would be caught
    probs = multiscale_logits(OneHotModel(), images, scales=(1.0,), flip=True)
    assert probs.shape == plain.shape
    torch.testing.assert_close(probs, plain.softmax(dim=1))  # the flipped branch was flipped back exactly
    assert torch.equal(probs.argmax(1), labels)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 21, 33))  # probabilities


@pytest.mark.parametrize("model", [OneHotModel(), StridedModel()], ids=["full", "stride4"])
def test_multiscale_stays_aligned(model: nn.Module) -> None:
    labels = label_map(37, 53)[None]
    images = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    probs = multiscale_logits(model, images)  # 0.5 to 1.75 and flip
    assert probs.shape == (1, 3, 37, 53)
    evaluator = SegmentationEvaluator(3)
    evaluator.update(probs, labels)
    stats = evaluator.compute()
    # only pixels at block edges may change; a mirrored or shifted output would lose whole columns
    assert stats["pixel_acc"] > (0.97 if isinstance(model, OneHotModel) else 0.9)
    assert stats["miou"] > (0.93 if isinstance(model, OneHotModel) else 0.8)


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.25])
def test_multiscale_odd_sizes(scale: float) -> None:
    images = torch.rand(2, 3, 37, 53)
    model = StridedModel().train()
    probs = multiscale_logits(model, images, scales=(scale,), flip=False)
    assert probs.shape == (2, 3, 37, 53)
    assert model.training  # the caller's mode is kept


def test_multiscale_bad_input() -> None:
    with pytest.raises(ValueError, match="positive factors"):
        multiscale_logits(OneHotModel(), torch.rand(1, 3, 8, 8), scales=())
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        multiscale_logits(OneHotModel(), torch.rand(3, 8, 8))


# ----------------------------------------------------------------------------------------------------- writer


@pytest.mark.real_data  # the stand-in's masks are written with voc_palette itself
def test_voc_palette_is_vocs_own(trees: DataTrees) -> None:
    with Image.open(next((trees.voc128 / "VOC2012" / "SegmentationClass").glob("*.png"))) as mask:
        assert mask.mode == "P"
        assert mask.getpalette() == voc_palette()


def test_voc_palette_is_the_devkits_colormap() -> None:
    """The same check without VOC's files: the devkit's VOClabelcolormap.m, ported, and colours VOC shows."""
    expected = []
    for label in range(256):
        rgb, c = [0, 0, 0], label
        for bit in range(8):  # the bits of the label, three at a time, fill each channel from its top bit down
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        expected += rgb
    assert voc_palette() == expected
    colors = np.array(voc_palette()).reshape(256, 3)
    assert colors[[0, 1, 15, 255]].tolist() == [[0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192]]


def test_writer_writes_masks_and_overlays(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    images = torch.zeros(3, 3, 9, 11)
    images[0] = torch.rand(3, 9, 11, generator=g)
    images[1, :, :7, :6] = torch.rand(3, 7, 6, generator=g)
    images[2, :, :5, :10] = torch.rand(3, 5, 10, generator=g)
    prediction = torch.randint(0, 4, (3, 9, 11), generator=g)
    prediction[1, 7:], prediction[1, :, 6:] = 9, 9  # padding: must be cropped away
    sizes = [(9, 11), (7, 6), (5, 10)]
    targets = [
        {"image_id": i, "file_name": f"JPEGImages/img{i}.jpg", "size": size, "mask": torch.zeros(9, 11)}
        for i, size in enumerate(sizes)
    ]
    writer = SegmentationWriter(str(tmp_path), max_images=2, alpha=0.5)
    writer.write_on_batch_end(None, None, prediction, None, (images, targets), 0, 0)  # type: ignore[arg-type]

    masks = tmp_path / "masks" / "JPEGImages"  # the relative path of each image is kept
    assert sorted(p.name for p in masks.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert sorted(p.name for p in (tmp_path / "overlays" / "JPEGImages").iterdir()) == ["img0.png", "img1.png"]
    palette = torch.tensor(voc_palette()).view(256, 3)
    for i, (h, w) in enumerate(sizes):
        with Image.open(masks / f"img{i}.png") as mask:
            assert mask.mode == "P"
            assert mask.getpalette() == voc_palette()
            np.testing.assert_array_equal(np.array(mask), prediction[i, :h, :w].numpy())
        if i == 2:
            continue
        with Image.open(tmp_path / "overlays" / "JPEGImages" / f"img{i}.png") as overlay:
            picture = torch.from_numpy(np.array(overlay.convert("RGB"))).permute(2, 0, 1).to(torch.float64)
        labels = prediction[i, :h, :w]
        pixels = (images[i, :, :h, :w] * 255).round().to(torch.float64)
        colors = palette[labels].permute(2, 0, 1).to(torch.float64)
        # background (0) untouched; every other class blended half and half with its VOC color
        expected = torch.where(labels == 0, pixels, 0.5 * pixels + 0.5 * colors)
        assert picture.shape == (3, h, w)
        assert (picture - expected).abs().max() <= 1.0


def test_writer_rejects_labels_beyond_a_palette(tmp_path: Path) -> None:
    prediction = torch.full((1, 4, 4), 300)
    batch = (torch.zeros(1, 3, 4, 4), [{"file_name": "a.jpg", "size": (4, 4)}])
    with pytest.raises(ValueError, match=r"300.*at most 256 classes"):
        SegmentationWriter(str(tmp_path)).write_on_batch_end(None, None, prediction, None, batch, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha is 2"):
        SegmentationWriter(str(tmp_path), alpha=2)
