"""Detection data: COCO and VOC datasets on coco128/voc128, augmentation, image reading, errors."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_trees import DataTrees
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import DataLoader
from torchvision.ops import box_convert

from mobiletasks.data.collate import detection_collate
from mobiletasks.data.detection.base import UnlabeledImages
from mobiletasks.data.detection.coco import COCODetection, COCODetectionDataModule, read_categories
from mobiletasks.data.detection.voc import VOC_CLASSES, VOCDetection, VOCDetectionDataModule
from mobiletasks.data.io import ImageReadError, read_image
from mobiletasks.data.skips import SharedCounter
from mobiletasks.data.transforms import (
    MEAN_PIXEL,
    DetectionTransform,
    IoURandomCrop,
    RandomZoomOut,
    train_transform,
)


def train_json(trees: DataTrees) -> Path:
    return trees.coco128 / "annotations" / "instances_train2017.json"


def train_images(trees: DataTrees) -> Path:
    return trees.coco128 / "images" / "train2017"


def first_train_ids(trees: DataTrees, count: int) -> list[int]:
    """The ids of the first ``count`` coco128 train images (9, 25, 30, 34, ... in the real files)."""
    return sorted(im["id"] for im in json.loads(train_json(trees).read_text())["images"])[:count]


@pytest.fixture(scope="module")
def coco_train(trees: DataTrees) -> COCODetection:
    return COCODetection(train_images(trees), train_json(trees))


def coco_subset(trees: DataTrees, tmp_path: Path, image_ids: list[int], edit: Any = None) -> tuple[Path, Path]:
    """A copy of some coco128 train images and their annotations; ``edit(data)`` may change the json."""
    data = json.loads(train_json(trees).read_text())
    data["images"] = [im for im in data["images"] if im["id"] in image_ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in image_ids]
    if edit is not None:
        edit(data)
    images = tmp_path / "images"
    images.mkdir()
    for im in data["images"]:
        shutil.copy(train_images(trees) / im["file_name"], images / im["file_name"])
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


# ---------------------------------------------------------------- COCO


def test_coco_targets_match_pycocotools(trees: DataTrees, coco_train: COCODetection) -> None:
    coco = COCO(str(train_json(trees)))
    assert coco_train.category_ids == sorted(coco.getCatIds()) and len(coco_train.class_names) == 80
    assert [r.image_id for r in coco_train.records] == sorted(coco.getImgIds())
    for record in coco_train.records:
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=record.image_id)) if not a["iscrowd"]]
        want = box_convert(torch.tensor([a["bbox"] for a in anns]).reshape(-1, 4), "xywh", "xyxy")
        torch.testing.assert_close(torch.from_numpy(record.boxes), want.float())
        assert record.labels is not None
        # contiguous label -> original category id, both ways
        assert [coco_train.label_to_category_id(int(lab)) for lab in record.labels] == [a["category_id"] for a in anns]
        assert [coco_train.category_id_to_label(a["category_id"]) for a in anns] == record.labels.tolist()
    image, target = coco_train[0]
    info = coco.imgs[target["image_id"]]
    assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["file_name"] == info["file_name"]


def test_coco_categories_read_from_the_end_of_the_file(trees: DataTrees) -> None:
    full = sorted(json.loads(train_json(trees).read_text())["categories"], key=lambda c: c["id"])
    assert read_categories(train_json(trees)) == full
    dm = COCODetectionDataModule(trees.coco128, train_annotations="annotations/instances_train2017.json")
    assert dm.num_classes == 80 and dm.category_ids == [c["id"] for c in full]
    assert dm.class_names[0] == "person" and dm.category_ids[-1] == 90


def test_coco_categories_of_a_file_in_another_key_order(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    cats = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]
    path.write_text(json.dumps({"categories": cats, "images": [], "annotations": []}, indent=1))
    assert [c["id"] for c in read_categories(path)] == [3, 7]


def test_coco_crowd_boxes_left_out(both_trees: DataTrees) -> None:
    coco_train = COCODetection(train_images(both_trees), train_json(both_trees))
    coco = COCO(str(train_json(both_trees)))
    crowd = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == coco_train.stats["crowd"] == both_trees.train_crowds  # 6 in coco128
    by_id = {r.image_id: r for r in coco_train.records}
    for ann in crowd:
        box = box_convert(torch.tensor([ann["bbox"]]), "xywh", "xyxy").float()
        boxes = torch.from_numpy(by_id[ann["image_id"]].boxes)
        assert len(boxes) == 0 or not torch.isclose(boxes, box).all(dim=1).any()
    assert coco_train.stats["boxes"] == len(coco.dataset["annotations"]) - both_trees.train_crowds


def test_coco_images_without_annotations(both_trees: DataTrees) -> None:
    empty, count = both_trees.empty_images, both_trees.train_images  # {250, 508} of 128 in coco128
    coco_train = COCODetection(train_images(both_trees), train_json(both_trees))
    ids = {r.image_id for r in coco_train.records}
    assert ids >= empty and len(coco_train) == count and len(empty) == 2
    index = [r.image_id for r in coco_train.records].index(min(empty))
    _, target = coco_train[index]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    kept = COCODetection(train_images(both_trees), train_json(both_trees), keep_empty=False)
    assert not empty & {r.image_id for r in kept.records} and len(kept) == count - 2


def test_coco_boxes_clipped_and_dropped_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Image.new("RGB", (100, 50)).save(tmp_path / "a.jpg")
    cats = [{"id": 5, "name": "thing"}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [-10, 5, 30, 20], "iscrowd": 0},  # clipped
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [90, 40, 30, 30], "iscrowd": 0},  # clipped
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [20, 20, 0, 10], "iscrowd": 0},  # zero width
        {"id": 4, "image_id": 1, "category_id": 5, "bbox": [120, 10, 5, 5], "iscrowd": 0},  # outside
        {"id": 5, "image_id": 1, "category_id": 5, "bbox": [10, 10, 5, 5], "iscrowd": 0},
    ]
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}], "annotations": anns}
    (tmp_path / "a.json").write_text(json.dumps(data | {"categories": cats}))
    with caplog.at_level(logging.WARNING, logger="mobiletasks.data"):
        ds = COCODetection(tmp_path, tmp_path / "a.json")
    assert ds.stats["clipped"] == 2 and ds.stats["dropped"] == 2 and ds.stats["boxes"] == 3
    assert "2 boxes clipped" in caplog.text and "2 boxes with zero or negative area dropped" in caplog.text
    _, target = ds[0]
    assert target["boxes"].tolist() == [[0, 5, 20, 25], [90, 40, 100, 50], [10, 10, 15, 15]]
    assert target["labels"].tolist() == [0, 0, 0]


# ---------------------------------------------------------------- COCO errors


def test_coco_missing_json_and_folder(trees: DataTrees, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.json does not exist.*COCO annotations json"):
        COCODetection(train_images(trees), tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError, match=r"image folder .*nowhere does not exist.*images="):
        COCODetection(tmp_path / "nowhere", train_json(trees))
    dm = COCODetectionDataModule(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"set root .* or train_annotations"):
        dm.num_classes  # noqa: B018
    dm = COCODetectionDataModule(trees.coco128)  # default train_images=train2017, but coco128 has images/train2017
    with pytest.raises(FileNotFoundError, match=r"train2017 does not exist; set root .* or train_images"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"category_id": 1000}, r"instances\.json: annotation id \d+ has category_id 1000 \(int\), which is not among"),
        ({"bbox": [1, 2, 3]}, r"instances\.json: annotation id \d+ has bbox \[1, 2, 3\]; a COCO bbox is four finite"),
        ({"bbox": [1, 2, "3", 4]}, r"annotation id \d+ has bbox"),
        ({"image_id": 12345}, r"annotation id \d+ refers to image_id 12345 \(int\), which is not in 'images'"),
    ],
)
def test_coco_bad_annotation(trees: DataTrees, tmp_path: Path, change: dict[str, Any], match: str) -> None:
    first = first_train_ids(trees, 1)
    images, annotations = coco_subset(trees, tmp_path, first, edit=lambda d: d["annotations"][0].update(change))
    with pytest.raises(ValueError, match=match):
        COCODetection(images, annotations)


def test_coco_missing_image_files(trees: DataTrees, tmp_path: Path) -> None:
    ids = first_train_ids(trees, 3)  # 9, 25, 30 in coco128
    images, annotations = coco_subset(trees, tmp_path, ids)
    (images / f"{ids[1]:012d}.jpg").unlink()
    (images / f"{ids[2]:012d}.jpg").unlink()
    missing = rf"2 image files listed in .*instances\.json are missing: .*{ids[1]:03d}\.jpg"
    with pytest.raises(FileNotFoundError, match=missing):
        COCODetection(images, annotations)


def test_coco_not_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid json.*pass a COCO annotations json"):
        COCODetection(tmp_path, tmp_path / "bad.json")


# ---------------------------------------------------------------- VOC


def voc_objects(xml: Path) -> list[tuple[str, list[float], bool]]:
    root = ET.parse(xml).getroot()
    return [
        (
            str(o.findtext("name")),
            [float(o.findtext(f"bndbox/{c}") or 0) for c in ("xmin", "ymin", "xmax", "ymax")],
            o.findtext("difficult") == "1",
        )
        for o in root.iter("object")
    ]


def test_voc_boxes_are_the_xml_minus_one(trees: DataTrees) -> None:
    ds = VOCDetection(trees.voc128, ["2012/val"], keep_difficult=True)
    assert ds.class_names == list(VOC_CLASSES)
    for record in ds.records:
        objects = voc_objects(trees.voc128 / "VOC2012" / "Annotations" / (Path(record.file_name).stem + ".xml"))
        want = torch.tensor([[b[0] - 1, b[1] - 1, b[2], b[3]] for _, b, _ in objects]).reshape(-1, 4)
        torch.testing.assert_close(torch.from_numpy(record.boxes), want)
        assert record.labels is not None and record.difficult is not None
        assert [VOC_CLASSES[lab] for lab in record.labels] == [name for name, _, _ in objects]
        assert record.difficult.tolist() == [d for _, _, d in objects]


def test_voc_difficult_left_out_in_training_and_flagged_in_eval(trees: DataTrees) -> None:
    train = VOCDetection(trees.voc128, ["2012/val"], keep_difficult=False)
    evaluation = VOCDetection(trees.voc128, ["2012/val"], keep_difficult=True)
    num_difficult = sum(int(r.difficult.sum()) for r in evaluation.records if r.difficult is not None)
    assert num_difficult == evaluation.stats["difficult"] == train.stats["difficult"] > 0
    assert train.stats["boxes"] + num_difficult == evaluation.stats["boxes"]
    index = next(i for i, r in enumerate(evaluation.records) if r.difficult is not None and r.difficult.any())
    _, eval_target = evaluation[index]
    _, train_target = train[index]
    assert eval_target["difficult"].any() and not train_target["difficult"].any()
    assert len(train_target["boxes"]) == len(eval_target["boxes"]) - int(eval_target["difficult"].sum())
    assert eval_target["image_id"] == index and eval_target["file_name"].startswith("VOC2012/JPEGImages/")


def test_voc_joined_sets(trees: DataTrees, tmp_path: Path) -> None:
    (tmp_path / "VOC2012").symlink_to(trees.voc128 / "VOC2012")
    (tmp_path / "VOC2007").symlink_to(trees.voc128 / "VOC2012")
    dm = VOCDetectionDataModule(tmp_path, train_sets=("2007/train", "2012/train"), val_sets=("2012/val",))
    ds = dm.dataset("train")
    single = VOCDetection(trees.voc128, ["2012/train"])
    assert len(ds) == 2 * len(single)
    assert [r.image_id for r in ds.records] == list(range(len(ds)))
    assert ds.records[0].file_name.startswith("VOC2007/") and ds.records[-1].file_name.startswith("VOC2012/")
    np.testing.assert_array_equal(ds.records[len(single)].boxes, single.records[0].boxes)
    assert dm.num_classes == 20 and dm.dataset("test") is not ds  # test falls back to the val sets


def write_voc(root: Path, objects: str, size: str = "<size><width>40</width><height>30</height></size>") -> None:
    year = root / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(year / "JPEGImages" / "a.jpg")
    (year / "Annotations" / "a.xml").write_text(f"<annotation>{size}{objects}</annotation>")
    (year / "ImageSets" / "Main" / "train.txt").write_text("a\n")


def obj(name: str, box: tuple[Any, ...] = (1, 1, 10, 10), difficult: int = 0) -> str:
    coords = "".join(f"<{c}>{v}</{c}>" for c, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"


def test_voc_errors(tmp_path: Path) -> None:
    write_voc(tmp_path, obj("dog") + obj("unicorn"))
    with pytest.raises(ValueError, match=r"a\.xml: object 1 has class 'unicorn', which is not among.*classes=\["):
        VOCDetection(tmp_path, ["2007/train"])
    assert len(VOCDetection(tmp_path, ["2007/train"], classes=["dog", "unicorn"])) == 1
    write_voc(tmp_path, obj("dog", (1, 1, "ten", 10)))
    with pytest.raises(ValueError, match=r"a\.xml: object 0 \(dog\) needs a <bndbox> with numeric"):
        VOCDetection(tmp_path, ["2007/train"])
    (tmp_path / "VOC2007" / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"a\.xml is not valid XML"):
        VOCDetection(tmp_path, ["2007/train"])
    (tmp_path / "VOC2007" / "Annotations" / "a.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 VOC annotation files are missing: .*a\.xml"):
        VOCDetection(tmp_path, ["2007/train"])
    with pytest.raises(FileNotFoundError, match=r"VOC2012 for set '2012/train' does not exist; root .* VOCdevkit"):
        VOCDetection(tmp_path, ["2012/train"])
    with pytest.raises(FileNotFoundError, match=r"image set list .*test\.txt"):
        VOCDetection(tmp_path, ["2007/test"])
    with pytest.raises(ValueError, match=r"VOC set '2007' must be '<year>/<image set>'"):
        VOCDetectionDataModule(tmp_path, train_sets=["2007"])


def test_voc_clipping_and_size_from_image(tmp_path: Path) -> None:
    write_voc(tmp_path, obj("dog", (0, 5, 50, 20)) + obj("cat", (10, 10, 9, 20)) + obj("cat", difficult=1), size="")
    ds = VOCDetection(tmp_path, "2007/train")
    assert (ds.records[0].width, ds.records[0].height) == (40, 30)  # no <size>: from the image header
    assert ds.stats == {"images": 1, "boxes": 1, "difficult": 1, "clipped": 1, "dropped": 1}
    assert ds.records[0].boxes.tolist() == [[0, 4, 40, 20]]  # type: ignore[union-attr]


# ---------------------------------------------------------------- augmentation


def colored_region(image: torch.Tensor) -> tuple[float, float, float, float] | None:
    """Bounding box (continuous pixels) of the saturated pixels: the painted rectangle."""
    pixels = image.permute(1, 2, 0).numpy() * 255
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    mask = chroma > max(40.0, 0.5 * chroma.max())
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def test_augmented_boxes_stay_on_their_pixels() -> None:
    image = np.full((120, 160, 3), 128, np.uint8)  # gray stays gray under the photometric distortions
    image[40:100, 30:90] = (230, 20, 20)
    box = np.array([[30.0, 40.0, 90.0, 100.0]])
    transform = train_transform(96)
    kept = 0
    for seed in range(24):
        transform.set_random_seed(seed)
        out, boxes, keep = transform(image, box)
        assert out.shape == (3, 96, 96)
        if len(keep) == 0:
            continue
        kept += 1
        assert ((boxes >= 0) & (boxes <= 96)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        region = colored_region(out)
        assert region is not None
        np.testing.assert_allclose(boxes[0].numpy(), region, atol=1.5, err_msg=f"seed {seed}")
    assert kept >= 12


def test_iou_crop_meets_the_minimum_iou() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    box = np.array([[20.0, 30.0, 60.0, 80.0]])
    area = 40 * 50
    transform = DetectionTransform([IoURandomCrop(min_ious=(0.5,))])
    cropped = 0
    for seed in range(20):
        transform.set_random_seed(seed)
        out, boxes, _ = transform(image, box)
        h, w = out.shape[1:]
        if (h, w) == (100, 100):
            continue
        cropped += 1
        assert len(boxes) == 1  # its center is inside the crop, as the IoU test needs
        inter = float((boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]))
        assert inter / (area + h * w - inter) >= 0.5 - 1e-6
    assert cropped > 10


def test_iou_crop_keeps_the_boxes_whose_centers_are_inside() -> None:
    # pixel (y, x) holds (x, y, 0): the first output pixel tells where the crop starts
    ys, xs = np.mgrid[0:100, 0:120]
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=2).astype(np.uint8)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (30, 2))
    boxes = np.concatenate([corners, np.minimum(corners + rng.uniform(3, 40, (30, 2)), [120, 100])], axis=1)
    transform = DetectionTransform([IoURandomCrop(min_ious=(0.1, 0.3), scale=(0.3, 0.6))])
    for seed in range(10):
        transform.set_random_seed(seed)
        out, got, keep = transform(image, boxes)
        h, w = out.shape[1:]
        left, top = (out[:2, 0, 0] * 255).round().tolist()
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx > left) & (cx < left + w) & (cy > top) & (cy < top + h)
        assert keep.tolist() == np.flatnonzero(inside).tolist()
        want = boxes[inside] - [left, top, left, top]
        np.testing.assert_allclose(got.numpy(), np.clip(want, 0, [w, h, w, h]), atol=1e-4)


def test_zoom_out_places_the_image_on_a_mean_canvas() -> None:
    image = np.full((20, 30, 3), 255, np.uint8)
    transform = DetectionTransform([RandomZoomOut(max_scale=4.0, p=1.0)])
    sizes = set()
    for seed in range(10):
        transform.set_random_seed(seed)
        out, boxes, _ = transform(image, np.array([[0.0, 0.0, 30.0, 20.0]]))
        h, w = out.shape[1:]
        sizes.add((h, w))
        assert 20 <= h <= 80 and 30 <= w <= 120
        x0, y0, x1, y1 = boxes[0].round().int().tolist()
        assert (x1 - x0, y1 - y0) == (30, 20)
        assert (out[:, y0:y1, x0:x1] == 1).all()  # the image is where its box says
        canvas = out.clone()
        canvas[:, y0:y1, x0:x1] = torch.tensor(MEAN_PIXEL, dtype=torch.float32)[:, None, None] / 255
        torch.testing.assert_close(canvas, torch.tensor(MEAN_PIXEL)[:, None, None].expand_as(out) / 255)
    assert len(sizes) > 5


def test_degenerate_boxes_are_dropped_and_counted(tmp_path: Path) -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    boxes = np.array([[10.0, 10.0, 100.0, 100.0], [50.0, 50.0, 50.0, 80.0], [0.0, 0.0, 0.5, 0.5]])
    _, out, keep = train_transform(20, augment=False)(image, boxes)  # resize to 10%: the last is 0.05 px
    assert keep.tolist() == [0] and out.tolist() == [[1, 1, 10, 10]]
    # through a dataset: the transform's drops are counted
    Image.fromarray(image).save(tmp_path / "a.png")
    cats = [{"id": 1, "name": "x"}]
    anns = [
        {"id": i, "image_id": 1, "category_id": 1, "bbox": b, "iscrowd": 0}
        for i, b in enumerate([[10, 10, 90, 90], [0, 0, 0.5, 0.5]])
    ]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 200}], "annotations": anns}
    (tmp_path / "a.json").write_text(json.dumps(data | {"categories": cats}))
    ds = COCODetection(tmp_path, tmp_path / "a.json", transform=train_transform(20, augment=False))
    _, target = ds[0]
    assert len(target["boxes"]) == 1 and ds.dropped_by_transform == 1


def test_workers_draw_different_augmentations() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    transform = train_transform(32)

    class Same(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> torch.Tensor:
            return transform(image, np.array([[8.0, 8.0, 40.0, 40.0]]))[0]

    torch.manual_seed(0)
    batches = list(DataLoader(Same(), batch_size=1, num_workers=2))
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1 took their first sample each


# ---------------------------------------------------------------- reading images


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA"])
def test_read_image_converts_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.new("RGB", (12, 7), (200, 30, 30))
    img = rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)
    if mode == "I;16":
        img = Image.fromarray(np.full((7, 12), 40000, np.uint16))
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    img.save(path)
    out = read_image(path)
    assert out.shape == (7, 12, 3) and out.dtype == np.uint8
    want = {"L": rgb.convert("L").getpixel((0, 0)), "I;16": round(40000 / 65535 * 255)}.get(mode)
    if want is not None:
        assert (out == want).all()
    elif mode != "LA":
        np.testing.assert_allclose(out[3, 5], (200, 30, 30), atol=12)


def test_read_image_applies_exif_orientation(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)  # top left of the stored bitmap
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "a.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "a.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:10, 10:, 0].mean() > 200 and out[:10, :10, 0].mean() < 50  # now top right


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"image file .*none\.jpg does not exist"):
        read_image(tmp_path / "none.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"cannot read image .*bad\.jpg"):
        read_image(tmp_path / "bad.jpg")


# ---------------------------------------------------------------- unreadable images at load time


@pytest.mark.parametrize(("num_workers", "context"), [(0, None), (1, "spawn")])
def test_corrupt_image_is_skipped_and_counted(
    trees: DataTrees, tmp_path: Path, num_workers: int, context: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    ids = first_train_ids(trees, 4)  # 9, 25, 30, 34 in coco128
    images, annotations = coco_subset(trees, tmp_path, ids)
    truncated, garbage = f"{ids[2]:012d}.jpg", f"{ids[3]:012d}.jpg"
    data = (images / truncated).read_bytes()
    (images / truncated).write_bytes(data[: len(data) // 3])  # truncated
    (images / garbage).write_bytes(b"garbage")
    ds = COCODetection(images, annotations)  # construction does not decode
    loader = DataLoader(
        ds, batch_size=2, num_workers=num_workers, collate_fn=detection_collate, multiprocessing_context=context
    )
    with caplog.at_level(logging.WARNING, logger="mobiletasks.data"):
        batches = list(loader)
    assert [len(images) for images, _ in batches] == [2, 0]
    assert [t["image_id"] for _, targets in batches for t in targets] == ids[:2]
    assert ds.skipped == 2
    if num_workers == 0:
        assert truncated in caplog.text and garbage in caplog.text


def test_image_of_another_size_than_annotated_is_skipped(trees: DataTrees, tmp_path: Path) -> None:
    ids = first_train_ids(trees, 1)
    images, annotations = coco_subset(trees, tmp_path, ids)
    Image.new("RGB", (10, 10)).save(images / f"{ids[0]:012d}.jpg")
    ds = COCODetection(images, annotations)
    assert ds[0] is None and ds.skipped == 1


def test_shared_counter_copies() -> None:
    counter = SharedCounter()
    counter.add(3)
    for clone in (copy.deepcopy(counter), pickle.loads(pickle.dumps(counter))):
        assert clone.value == 3
        clone.add()
        assert clone.value == 4 and counter.value == 3


def test_collate_drops_none() -> None:
    a, b = (torch.zeros(3, 4, 5), {"image_id": 1}), (torch.zeros(3, 6, 5), {"image_id": 2})
    images, targets = detection_collate([a, None, b])
    assert [i.shape[1] for i in images] == [4, 6] and [t["image_id"] for t in targets] == [1, 2]
    assert detection_collate([None]) == ([], [])


# ---------------------------------------------------------------- data modules


def test_coco_datamodule_end_to_end(trees: DataTrees) -> None:
    from mobiletasks.evaluation.coco import COCOEvaluator

    dm = COCODetectionDataModule(
        trees.coco128,
        train_images="images/train2017",
        val_images="images/val2017",
        image_size=64,
        batch_size=3,
        num_workers=0,
    )
    assert dm.num_classes == 80 and len(dm.class_names) == 80 and dm.eval_batch_size == 3
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == 3 and all(i.shape == (3, 64, 64) for i in images)
    for t in targets:
        assert t["boxes"].shape[1] == 4 and len(t["boxes"]) == len(t["labels"])
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 64)).all()
        assert ((t["labels"] >= 0) & (t["labels"] < 80)).all()
    images, targets = next(iter(dm.val_dataloader()))
    coco = dm.datasets["val"].coco  # type: ignore[attr-defined]
    for image, target in zip(images, targets, strict=True):
        info = coco.imgs[target["image_id"]]
        assert image.shape == (3, info["height"], info["width"])  # original size
    evaluator = dm.evaluator("val")
    assert isinstance(evaluator, COCOEvaluator)
    assert dm.dataset("test") is not dm.dataset("val")  # no test files: the val files, another dataset
    with pytest.raises(ValueError, match=r"unknown split 'train'"):
        dm.evaluator("train")  # type: ignore[arg-type]


def test_voc_datamodule_end_to_end(trees: DataTrees) -> None:
    from mobiletasks.evaluation.voc import VOCEvaluator

    dm = VOCDetectionDataModule(
        trees.voc128, train_sets=["2012/train"], val_sets=["2012/val"], image_size=48, batch_size=2, num_workers=0
    )
    assert dm.num_classes == 20
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert [tuple(i.shape) for i in images] == [(3, 48, 48)] * 2
    assert all(not t["difficult"].any() for t in targets)
    images, targets = next(iter(dm.val_dataloader()))
    assert all(i.shape[1:] != (48, 48) for i in images) and all("difficult" in t for t in targets)
    assert isinstance(dm.evaluator("test"), VOCEvaluator)


def test_predict_images_folder(trees: DataTrees, tmp_path: Path) -> None:
    Image.new("RGB", (33, 21)).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.new("L", (10, 12)).save(tmp_path / "sub" / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    dm = VOCDetectionDataModule(trees.voc128, predict_images=str(tmp_path), batch_size=4, num_workers=0)
    dm.setup("predict")
    images, targets = next(iter(dm.predict_dataloader()))
    assert [tuple(i.shape) for i in images] == [(3, 21, 33), (3, 12, 10)]
    assert targets == [{"image_id": 0, "file_name": "b.png"}, {"image_id": 1, "file_name": "sub/a.jpg"}]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no images"):
        UnlabeledImages(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"image folder \(predict_images\) .*nothing does not exist"):
        UnlabeledImages(tmp_path / "nothing")
