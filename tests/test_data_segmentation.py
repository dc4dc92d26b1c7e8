"""Segmentation data: VOC/SBD and COCO-semantic masks on voc128/coco128, augmentation alignment, collate,
the synthetic shapes writer and ``mobiletasks data synth --task segmentation``, the data modules end to end."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_trees import DataTrees
from PIL import Image
from pycocotools.coco import COCO

from mobiletasks.cli import main
from mobiletasks.data.collate import segmentation_collate
from mobiletasks.data.detection.voc import VOC_CLASSES
from mobiletasks.data.io import voc_palette, write_index_png
from mobiletasks.data.segmentation.datamodules import (
    COCO_VOC_CATEGORY_IDS,
    COCOSegmentationDataModule,
    VOCSegmentation,
    VOCSegmentationDataModule,
)
from mobiletasks.data.synthetic import (
    SEGMENTATION_CLASSES,
    SHAPE_CLASSES,
    ShapesSegmentationDataModule,
    class_mask,
    make_sample,
    read_info,
    sample_rng,
    write_segmentation_dataset,
)
from mobiletasks.data.transforms import MEAN_PIXEL, SegmentationTransform, segmentation_train_transform

PERSON = 1 + VOC_CLASSES.index("person")  # VOC label of COCO category 1


def raw_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


# ---------------------------------------------------------------------------------------------- VOC


def test_voc128_masks_equal_palette_indices(both_trees: DataTrees) -> None:
    dataset = VOCSegmentation(both_trees.voc128, "val")
    assert len(dataset) == both_trees.val_masks and dataset.class_names == ["background", *VOC_CLASSES]  # 100
    seen: set[int] = set()
    for record in dataset.records:
        assert record.mask is not None
        with Image.open(record.mask) as img:
            assert img.mode == "P"
            expected = np.asarray(img)
        labels = dataset.load_mask(record.mask)
        np.testing.assert_array_equal(labels, expected)
        seen |= set(np.unique(labels).tolist())
    assert len(seen) > 5  # several classes, not only background
    sample = dataset[3]
    assert sample is not None
    image, target = sample
    assert image.dtype == torch.float32 and target["mask"].dtype == torch.int64
    assert tuple(target["mask"].shape) == tuple(image.shape[1:])
    assert target["file_name"] == f"VOC2012/JPEGImages/{dataset.records[3].path.name}" and target["image_id"] == 3


@pytest.mark.real_data  # the stand-in's masks are written with voc_palette itself; see test_eval_segmentation.py
def test_voc_palette_is_the_devkit_palette(trees: DataTrees) -> None:
    with Image.open(next((trees.voc128 / "VOC2012" / "SegmentationClass").glob("*.png"))) as img:
        assert img.getpalette() == voc_palette()


def voc_fixture(
    root: Path, masks: dict[str, np.ndarray], folder: str = "SegmentationClass", split: str = "train"
) -> Path:
    """A tiny VOC2012 tree: ``masks`` id -> mask; images are gray; palette PNGs, or grayscale in ``*Aug``."""
    voc = root / "VOC2012"
    for sub in ("JPEGImages", folder, "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for name, mask in masks.items():
        Image.fromarray(np.full((*mask.shape, 3), 128, np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
        if folder.endswith("Aug"):
            Image.fromarray(mask.astype(np.uint8)).save(voc / folder / f"{name}.png")  # SBD: grayscale
        else:
            write_index_png(torch.as_tensor(mask), voc / folder / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in masks))
    return root


def test_sbd_train_aug_reads_segmentation_class_aug(tmp_path: Path) -> None:
    aug = {"2008_000001": np.tile(np.arange(21, dtype=np.uint8), (8, 1)), "2008_000002": np.full((5, 7), 255)}
    voc_fixture(tmp_path, aug, folder="SegmentationClassAug", split="train_aug")
    voc_fixture(tmp_path, {"2008_000001": np.zeros((8, 21), np.uint8)})  # the plain masks differ
    dm = VOCSegmentationDataModule(tmp_path, train_split="train_aug", val_split="train", augment=False, crop_size=8)
    dm.setup("fit")
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 2 and len(val) == 1
    assert train.records[0].mask == tmp_path / "VOC2012" / "SegmentationClassAug" / "2008_000001.png"
    for record, mask in zip(train.records, aug.values(), strict=True):
        assert record.mask is not None
        np.testing.assert_array_equal(train.load_mask(record.mask), mask)
    assert val[0] is not None and val[0][1]["mask"].max() == 0


def test_bad_mask_value_errors_naming_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[2, 2], mask[3, 3] = 30, 21
    voc_fixture(tmp_path, {"bad": mask})
    dataset = VOCSegmentation(tmp_path, "train")
    with pytest.raises(ValueError, match=r"bad\.png holds pixel values \[21, 30\].*0\.\.20, 255"):
        dataset.check_masks()  # at set-up, from a sample of the masks
    # shapes classes: 6 labels, so 6..254 are errors too
    with pytest.raises(ValueError, match=r"values \[21, 30\].*0\.\.5, 255"):
        VOCSegmentation(tmp_path, "train", classes=SHAPE_CLASSES).check_masks()
    # a mask outside the sample, met deep in an epoch: skipped with the same message, not a crash
    with caplog.at_level(logging.WARNING):
        assert dataset[0] is None and dataset.skipped == 1
    assert "bad.png holds pixel values [21, 30]" in caplog.text


def test_colour_mask_and_unreadable_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    voc_fixture(tmp_path, {"a": np.zeros((6, 6)), "b": np.zeros((6, 6))})
    Image.new("RGB", (6, 6), (128, 0, 0)).save(tmp_path / "VOC2012" / "SegmentationClass" / "a.png")
    (tmp_path / "VOC2012" / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    dataset = VOCSegmentation(tmp_path, "train")
    with pytest.raises(ValueError, match=r"a\.png is a 'RGB' image; segmentation masks must be single-channel"):
        dataset.check_masks()
    with caplog.at_level(logging.WARNING):
        assert dataset[0] is None and dataset[1] is None and dataset[1] is None
    assert dataset.skipped == 3 and "b.jpg" in caplog.text and "a.png is a 'RGB' image" in caplog.text


def test_missing_folders_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"VOC2012 does not exist; root \(now .*\) must be the VOCdevkit"):
        VOCSegmentationDataModule(tmp_path).setup("fit")
    voc_fixture(tmp_path, {"a": np.zeros((4, 4))})
    with pytest.raises(FileNotFoundError, match=r"trainval\.txt does not exist; check split='trainval'"):
        VOCSegmentationDataModule(tmp_path, train_split="trainval").setup("fit")
    (tmp_path / "VOC2012" / "SegmentationClass" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 VOC masks are missing: .*a\.png"):
        VOCSegmentation(tmp_path, "train")
    dm = COCOSegmentationDataModule(tmp_path, train_images="VOC2012/JPEGImages", train_masks="nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist; set root .* or train_masks"):
        dm.setup("fit")


# ---------------------------------------------------------------------------------------------- augmentation

COLORS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def striped_sample(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertical stripes of classes 0..4 (left to right, uneven widths): the image's colour tells the class."""
    edges = np.array([0.1, 0.35, 0.45, 0.8]) * width
    mask = np.searchsorted(edges, np.arange(width) + 0.5)[None, :].repeat(height, axis=0).astype(np.uint8)
    return COLORS[mask], mask


@pytest.mark.parametrize("seed", range(12))
def test_augmentation_keeps_image_and_mask_aligned(seed: int) -> None:
    image, mask = striped_sample(70, 90)
    transform = segmentation_train_transform(64, scale_range=(0.5, 2.0))
    transform.set_random_seed(seed)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 64, 64) and out_mask.shape == (64, 64) and out_mask.dtype == torch.int64
    pixels = (out_image.permute(1, 2, 0).numpy() * 255).round()
    m = out_mask.numpy()
    # interior pixels (5x5 neighbourhood of one value): the bilinear image resize blends up to 2 pixels
    # across a boundary at 2x, and the nearest-neighbour mask boundary may sit a pixel off the blend's middle
    # across a boundary at 2x, and the nearest-neighbour mask boundary may sit a pixel off the blend's middle;
    # the crop's own border is never interior (the stripe beyond it is unknown)
    padded = np.pad(m, 2, constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
    interior = (windows == m[..., None, None]).all(axis=(-1, -2))
    labelled = interior & (m != 255)
    assert labelled.sum() > 100
    np.testing.assert_allclose(pixels[labelled], COLORS[m[labelled]], atol=1)
    # padding: mask 255 where the image shows the mean pixel
    pad = interior & (m == 255)
    np.testing.assert_allclose(pixels[pad], np.broadcast_to(MEAN_PIXEL, pixels[pad].shape), atol=1)
    assert set(np.unique(m)) <= {0, 1, 2, 3, 4, 255}


def test_augmentation_pads_with_255_flips_and_repeats() -> None:
    image, mask = striped_sample(40, 50)
    small = segmentation_train_transform(64, scale_range=(0.5, 0.5))
    _, out = small(image, mask)
    assert (out == 255).sum() == 64 * 64 - 20 * 25  # a 20x25 image padded to 64x64
    flips = 0
    transform = segmentation_train_transform(32, scale_range=(1.0, 1.0))
    for seed in range(40):
        transform.set_random_seed(seed)
        _, out = transform(image, mask)
        flips += int(out[0, 0] > out[0, -1])  # classes increase left to right unless flipped
    assert 8 <= flips <= 32
    transform.set_random_seed(7)
    first = transform(image, mask)
    transform.set_random_seed(7)
    second = transform(image, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # no augmentation: pad and center crop only; no transforms: unchanged
    _, plain = segmentation_train_transform(48, augment=False)(image, mask)
    assert (
        plain.shape == (48, 48)
        and (plain[:4] == 255).all()
        and torch.equal(plain[4:44, :], torch.from_numpy(mask[:, 1:49]).long())
    )
    assert torch.equal(SegmentationTransform()(image, mask)[1], torch.from_numpy(mask).long())
    with pytest.raises(ValueError, match="crop_size must be a positive"):
        segmentation_train_transform(0)


def test_collate_pads_images_with_zeros_and_masks_with_255() -> None:
    a: tuple[torch.Tensor, dict[str, Any]] = (
        torch.rand(3, 4, 6),
        {"mask": torch.ones(4, 6, dtype=torch.long), "image_id": 0},
    )
    b: tuple[torch.Tensor, dict[str, Any]] = (
        torch.rand(3, 7, 5),
        {"mask": torch.full((7, 5), 2, dtype=torch.long), "image_id": 1},
    )
    images, targets = segmentation_collate([a, None, b])
    assert images.shape == (2, 3, 7, 6)
    assert (
        torch.equal(images[0, :, :4, :6], a[0]) and images[0, :, 4:].abs().sum() == 0 and images[1, :, :, 5:].sum() == 0
    )
    assert [t["size"] for t in targets] == [(4, 6), (7, 5)] and [t["image_id"] for t in targets] == [0, 1]
    masks = torch.stack([t["mask"] for t in targets])
    assert (masks[0, 4:] == 255).all() and (masks[0, :4] == 1).all() and (masks[1, :, 5] == 255).all()
    assert "size" not in a[1] and a[1]["mask"].shape == (4, 6)  # inputs untouched
    empty, none = segmentation_collate([None])
    assert empty.shape == (0, 3, 0, 0) and none == []


# ---------------------------------------------------------------------------------------------- COCO semantic


def test_coco_semantic_masks_map_to_voc_labels(both_trees: DataTrees) -> None:
    dm = COCOSegmentationDataModule(both_trees.coco128, num_workers=0)
    assert dm.num_classes == 21 and dm.class_names[PERSON] == "person"
    dataset = dm.dataset("val")
    masks, no_mask = both_trees.val_masks, both_trees.val_images - both_trees.val_masks
    assert len(dataset) == masks and dataset.stats["no_mask"] == no_mask  # coco128: 128 images, 100 masks, 28 not
    names = {int(k): v for k, v in json.loads((both_trees.coco128 / "semantic" / "classes.json").read_text()).items()}
    renamed = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa", "dining table": "diningtable"}
    renamed |= {"potted plant": "pottedplant", "tv": "tvmonitor"}
    assert [renamed.get(names[i], names[i]) for i in COCO_VOC_CATEGORY_IDS] == list(VOC_CLASSES)
    checked_person = checked_other = 0
    for record in dataset.records[:30]:
        assert record.mask is not None and record.image_id == int(record.path.stem)
        raw, labels = raw_png(record.mask), dataset.load_mask(record.mask)
        assert (labels[raw == 1] == PERSON).all()
        assert (labels[~np.isin(raw, COCO_VOC_CATEGORY_IDS)] == 0).all()
        checked_person += int((raw == 1).sum())
        checked_other += int((raw > 90).sum())  # stuff classes: background
        voc_mask = both_trees.voc128 / "VOC2012" / "SegmentationClass" / record.mask.name
        if voc_mask.is_file():  # voc128 was converted from the same masks
            np.testing.assert_array_equal(labels, raw_png(voc_mask))
    assert checked_person > 1000 and checked_other > 1000


def test_coco_semantic_with_a_class_map(trees: DataTrees, tmp_path: Path) -> None:
    dm = COCOSegmentationDataModule(trees.coco128, classes_json="semantic/classes.json")
    table = json.loads((trees.coco128 / "semantic" / "classes.json").read_text())
    assert dm.class_names[:2] == ["unlabeled", "person"] and dm.num_classes == len(table)
    record = dm.dataset("val").records[0]
    assert record.mask is not None
    raw, labels = raw_png(record.mask), dm.dataset("val").load_mask(record.mask)
    order = sorted(int(k) for k in table)
    np.testing.assert_array_equal(labels, np.searchsorted(order, raw))
    (tmp_path / "map.json").write_text(
        json.dumps({"0": "background", "1": "person", "2": None, "3": "vehicle", "4": "vehicle"})
    )
    names, lut = COCOSegmentationDataModule(tmp_path, classes_json="map.json").class_map()
    assert names == ["background", "person", "vehicle"] and lut[:6].tolist() == [0, 1, 255, 2, 2, 255]


# ---------------------------------------------------------------------------------------------- synthetic shapes


def test_synth_voc_masks_equal_make_sample(tmp_path: Path) -> None:
    root = write_segmentation_dataset(tmp_path / "seg", num_images=5, image_size=64, seed=3, progress=False)
    info = read_info(root)
    assert info is not None and info["task"] == "segmentation" and info["images"] == {"train": 4, "val": 1}
    for split, indices in (("train", range(4)), ("val", [4])):
        dataset = VOCSegmentation(root, split, classes=SHAPE_CLASSES)
        assert dataset.class_names == list(SEGMENTATION_CLASSES)
        for record, index in zip(dataset.records, indices, strict=True):
            assert record.mask is not None
            with Image.open(record.mask) as img:
                assert img.mode == "P" and img.getpalette() == voc_palette()
            labels = dataset.load_mask(record.mask)
            _, objects = make_sample(sample_rng(3, index), 64)
            for obj in objects:
                np.testing.assert_array_equal(labels == obj.label + 1, _union(objects, obj.label))
            assert (labels == 0).sum() == 64 * 64 - sum(obj.area for obj in objects)


def _union(objects: list, label: int) -> np.ndarray:
    masks = [o.mask for o in objects if o.label == label]
    return np.logical_or.reduce(masks)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on numpy 2
def test_synth_coco_segmentation(tmp_path: Path) -> None:
    root = write_segmentation_dataset(tmp_path / "c", format="coco", num_images=4, image_size=64, progress=False)
    coco = COCO(str(root / "annotations" / "instances_train.json"))
    for image_id in coco.getImgIds():
        _, objects = make_sample(sample_rng(0, image_id - 1), 64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert [a["category_id"] for a in anns] == [o.label + 1 for o in objects]
        for ann, obj in zip(anns, objects, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)
        np.testing.assert_array_equal(
            raw_png(root / "semantic" / "train" / f"{image_id:06d}.png"), class_mask(objects, 64)
        )
    dm = COCOSegmentationDataModule(
        root, "images/train", "semantic/train", "images/val", "semantic/val", classes_json="semantic/classes.json"
    )
    assert dm.class_names == list(SEGMENTATION_CLASSES)
    _, target = dm.dataset("val")[0]  # type: ignore[misc]
    np.testing.assert_array_equal(target["mask"].numpy(), class_mask(make_sample(sample_rng(0, 3), 64)[1], 64))


def test_cli_synth_segmentation_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voc"
    argv = ["data", "synth", "--task", "segmentation", "--format", "voc", "--out", str(out), "--num-images", "3"]
    assert main([*argv, "--image-size", "48", "--seed", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic segmentation dataset" in printed and "background, circle" in printed
    dataset = VOCSegmentation(out, "val", classes=SHAPE_CLASSES)
    assert dataset.records[0].mask is not None
    expected = class_mask(make_sample(sample_rng(1, 2), 48)[1], 48)
    np.testing.assert_array_equal(dataset.load_mask(dataset.records[0].mask), expected)
    trainval = (out / "VOC2012" / "ImageSets" / "Segmentation" / "trainval.txt").read_text().split()
    assert trainval == ["000001", "000002", "000003"]


# ---------------------------------------------------------------------------------------------- data modules


def test_shapes_data_module_end_to_end(tmp_path: Path) -> None:
    dm = ShapesSegmentationDataModule(
        tmp_path / "shapes", num_images=6, image_size=64, crop_size=48, batch_size=3, num_workers=0
    )
    assert dm.num_classes == 6 and dm.image_size == 48 and dm.class_names == list(SEGMENTATION_CLASSES)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, 48, 48) and images.dtype == torch.float32
    masks = torch.stack([t["mask"] for t in targets])
    assert masks.shape == (3, 48, 48) and masks.dtype == torch.int64 and masks.max() <= 255
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (1, 3, 64, 64) and targets[0]["size"] == (64, 64)
    assert dm.evaluator("val").num_classes == 6
    stamp = (tmp_path / "shapes" / "mobiletasks_synth.json").stat().st_mtime_ns
    ShapesSegmentationDataModule(tmp_path / "shapes", num_images=6, image_size=64).prepare_data()  # reused
    assert (tmp_path / "shapes" / "mobiletasks_synth.json").stat().st_mtime_ns == stamp


def test_voc128_data_module_end_to_end(trees: DataTrees, tmp_path: Path) -> None:
    dm = VOCSegmentationDataModule(trees.voc128, crop_size=97, batch_size=2, eval_batch_size=3, num_workers=0)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 97, 97) and all(t["mask"].shape == (97, 97) for t in targets)
    images, targets = next(iter(dm.val_dataloader()))
    sizes = [t["size"] for t in targets]
    assert images.shape == (3, 3, max(h for h, _ in sizes), max(w for _, w in sizes))
    for image, target in zip(images, targets, strict=True):
        h, w = target["size"]
        assert image[:, h:].abs().sum() == 0 and image[:, :, w:].abs().sum() == 0
        assert (target["mask"][h:] == 255).all() and (target["mask"][:, w:] == 255).all()
        assert (target["mask"][:h, :w] != 255).all()  # voc128 has no boundary band
    predict = tmp_path / "predict"
    predict.mkdir()
    shutil.copy(next((trees.voc128 / "VOC2012" / "JPEGImages").glob("*.jpg")), predict / "x.jpg")
    dm = VOCSegmentationDataModule(trees.voc128, predict_images=str(predict), num_workers=0)
    dm.setup("predict")
    images, targets = next(iter(dm.predict_dataloader()))
    assert images.shape[0] == 1 and targets[0]["file_name"] == "x.jpg" and "mask" not in targets[0]
