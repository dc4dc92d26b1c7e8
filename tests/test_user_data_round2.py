"""Users' own data, round two: files passed over or reported missing, valid inputs refused, numbers given without
meaning. Each kind with the right value, in the places of the package it can reach."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from conftest import HAS_TIMM, calibrate, randomize
from user_data import coco_copy, ground_truth_results, needs_data

from mobiletasks import create_backbone, create_model
from mobiletasks.cli import main
from mobiletasks.data import COCODetection
from mobiletasks.evaluation import COCOEvaluator, VOCEvaluator, evaluate_results_file
from mobiletasks.preprocessing import Normalize

# ------------------------------------------------------------------ valid inputs refused


def without_batch_counts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as converters from TF/Caffe and PyTorch before 0.4.1 write it."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_torchvision_weights_without_num_batches_tracked(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 96, 96)  # ours takes [0, 1] images, torchvision's network normalized ones
    ref = calibrate(randomize(torchvision.models.mobilenet_v2()), Normalize()(x))
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(without_batch_counts(ref.state_dict()), path)
    torchvision.models.mobilenet_v2().load_state_dict(torch.load(path, weights_only=True))  # PyTorch accepts it
    ours = create_model("mobilenet_v2", num_classes=1000, pretrained=path, channels_last=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(Normalize()(x)), rtol=0, atol=1e-5)
    backbone = create_backbone("mobilenet_v2", pretrained=path)  # pretrained_backbone goes through the same
    assert backbone is not None
    detector = create_model("ssdlite_mobilenet_v2", num_classes=3, pretrained_backbone=path)
    torch.testing.assert_close(detector.backbone.body.features[0][0].weight, ref.features[0][0].weight)


@pytest.mark.skipif(not HAS_TIMM, reason="needs timm")
def test_timm_weights_without_num_batches_tracked(tmp_path: Path) -> None:
    import timm

    x = torch.rand(1, 3, 96, 96)
    ref = timm.create_model("mobilenetv1_100", pretrained=False)
    normalize = Normalize(ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"])  # [-1, 1], as our mobilenet_v1
    ref = calibrate(randomize(ref), normalize(x))
    path = tmp_path / "mobilenetv1_100.pth"
    torch.save(without_batch_counts(ref.state_dict()), path)
    ours = create_model("mobilenet_v1", num_classes=1000, pretrained=path, channels_last=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(normalize(x)), rtol=0, atol=1e-5)


def test_other_missing_keys_are_still_refused(tmp_path: Path) -> None:
    state = without_batch_counts(torchvision.models.mobilenet_v2().state_dict())
    state.pop("features.0.1.running_var")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing 1 keys \(features\.0\.1\.running_var\)"):
        create_model("mobilenet_v2", num_classes=1000, pretrained=path)


# ------------------------------------------------------------------ numbers without meaning


@needs_data
def test_empty_coco_split_is_refused(tmp_path: Path) -> None:
    def no_images(data: dict[str, Any]) -> None:
        data["images"], data["annotations"] = [], []

    images, annotations = coco_copy(tmp_path, 2, no_images)
    with pytest.raises(ValueError, match=r"instances\.json lists no images: there is nothing to train on or score"):
        COCODetection(images, annotations)

    def no_boxes(data: dict[str, Any]) -> None:
        data["annotations"] = []

    images, annotations = coco_copy(tmp_path / "b", 2, no_boxes)
    assert len(COCODetection(images, annotations)) == 2  # negatives are images too
    with pytest.raises(ValueError, match=r"lists no images with a box \(keep_empty=False"):
        COCODetection(images, annotations, keep_empty=False)


@needs_data
def test_results_with_negative_sizes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corners swapped in an xyxy-to-xywh conversion: pycocotools would score every such box a miss."""
    _, annotations = coco_copy(tmp_path, 2)
    results = ground_truth_results(annotations)
    for r in results[:2]:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x + w, y + h, -w, -h]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"2 of \d+ detections have a negative width or height.*swapped"):
        evaluate_results_file(annotations, path)
    assert main(["evaluate", "--annotations", str(annotations), "--results", str(path)]) == 2
    assert "negative width or height" in capsys.readouterr().err


@needs_data
def test_empty_results_file_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, annotations = coco_copy(tmp_path, 2)
    path = tmp_path / "results.json"
    path.write_text("[]")
    with caplog.at_level(logging.WARNING):
        assert evaluate_results_file(annotations, path)["map"] == 0.0
    assert "holds no detection" in caplog.text


def test_inverted_predicted_boxes_are_refused() -> None:
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    pred = {"boxes": torch.tensor([[10.0, 10, 0, 0]]), "labels": torch.tensor([0]), "scores": torch.ones(1)}
    with pytest.raises(ValueError, match=r"1 predicted boxes have x2 < x1 or y2 < y1"):
        VOCEvaluator(["cat"]).update([pred], [gt])
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "cat"}], "annotations": []}
    coco.createIndex()
    with pytest.raises(ValueError, match=r"image 1 \(int\): 1 predicted boxes have x2 < x1"):
        COCOEvaluator(coco).update([pred], [{"image_id": 1}])


def test_checkpoint_of_a_data_module_given_paths_loads_weights_only(tmp_path: Path) -> None:
    """Python users pass ``Path`` objects: the checkpoint must still hold plain data (weights_only=True)."""
    import lightning as L
    from celeba_layout import write_celeba

    from mobiletasks.data import CelebADataModule
    from mobiletasks.tasks import AttributeTask

    root = write_celeba(tmp_path / "celeba")
    dm = CelebADataModule(root, image_size=32, batch_size=4, num_workers=0)
    task = AttributeTask(num_classes=40, model_kwargs={"width_mult": 0.25})
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(task, datamodule=dm)
    (last,) = tmp_path.rglob("*.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"]["root"] == str(root)


# ------------------------------------------------------------------ files passed over, or reported missing


def test_image_folder_takes_every_image_pillow_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``.jfif`` photos (Pillow opens them as JPEG) were passed over: a whole validation class could vanish."""
    from PIL import Image

    from mobiletasks.data import ImageFolderDataModule

    for split, name, count in [("train", "cat/a.jpg", 1), ("train", "cat/b.jfif", 1), ("train", "dog/c.jfif", 1)]:
        path = tmp_path / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (count * 200, 0, 0)).save(path, format="JPEG")
    (tmp_path / "val" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "dog" / "d.JFIF", format="JPEG")
    (tmp_path / "val" / "dog" / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(tmp_path, image_size=8, num_workers=0)
    assert sorted(dm.dataset("train").file_names) == ["cat/a.jpg", "cat/b.jfif", "dog/c.jfif"]
    with caplog.at_level(logging.WARNING):
        val = dm.dataset("val")
    assert val.file_names == ["dog/d.JFIF"] and val.targets is not None and val.targets.tolist() == [1]
    assert "1 files are not images Pillow reads (by suffix) and are passed over: dog/notes.txt" in caplog.text
    assert "has no images of 1 of the 2 classes (cat)" in caplog.text  # said, not silent


@needs_data
def test_voc_images_found_by_the_xml_filename_or_another_suffix(tmp_path: Path) -> None:
    """labelImg, CVAT and Roboflow name the image in each XML's <filename>: .png, .JPG or another name."""
    from PIL import Image
    from user_data import person_ids, voc_copy

    from mobiletasks.data import VOCDetection
    from mobiletasks.data.segmentation.datasets import VOCSegmentation

    ids = person_ids(3)
    root = voc_copy(tmp_path, ids)
    images, xmls = root / "VOC2012" / "JPEGImages", root / "VOC2012" / "Annotations"
    Image.open(images / f"{ids[0]}.jpg").save(images / f"{ids[0]}.png")
    (images / f"{ids[0]}.jpg").unlink()
    (images / f"{ids[1]}.jpg").rename(images / f"{ids[1]}.JPG")
    (images / f"{ids[2]}.jpg").rename(images / "photo_0003.jpeg")
    xml = (xmls / f"{ids[2]}.xml").read_text()
    (xmls / f"{ids[2]}.xml").write_text(
        re.sub(r"<filename>[^<]*</filename>", "<filename>photo_0003.jpeg</filename>", xml)
    )
    dataset = VOCDetection(root, ["2012/val"], keep_difficult=True)
    assert [r.path.name for r in dataset.records] == [f"{ids[0]}.png", f"{ids[1]}.JPG", "photo_0003.jpeg"]
    assert all(sample is not None for sample in (dataset[0], dataset[1], dataset[2]))
    masks = VOCSegmentation(root, "val")  # the segmentation set finds them as detection does
    assert [r.path.name for r in masks.records] == [f"{ids[0]}.png", f"{ids[1]}.JPG", "photo_0003.jpeg"]
    windows = r"C:\Users\me\Pictures\photo_0003.jpeg"  # a <filename> written on Windows counts by its last part
    (xmls / f"{ids[2]}.xml").write_text(
        re.sub(r"<filename>[^<]*</filename>", lambda _: f"<filename>{windows}</filename>", xml)
    )
    assert VOCDetection(root, ["2012/val"], keep_difficult=True).records[2].path.name == "photo_0003.jpeg"
    (xmls / f"{ids[2]}.xml").write_text(xml)  # <filename> names no file there any more
    with pytest.raises(FileNotFoundError, match=rf"looked for {ids[2]}\.jpg in .*JPEGImages, which holds 3 files"):
        VOCSegmentation(root, "val")


@needs_data
def test_coco_file_names_in_another_case_are_found_and_missing_ones_explained(tmp_path: Path) -> None:
    images, annotations = coco_copy(tmp_path, 2)
    first, second = sorted(images.iterdir())
    first.rename(first.with_suffix(".JPG"))
    dataset = COCODetection(images, annotations)
    assert dataset.records[0].path.name == first.with_suffix(".JPG").name and dataset[0] is not None
    second.rename(second.with_suffix(".jpeg"))
    with pytest.raises(FileNotFoundError, match=rf"looked for {second.name} in .*; found nearby: {second.stem}\.jpeg"):
        COCODetection(images, annotations)
    (images / "sub").mkdir()  # a file_name written on Windows: sub\x.jpg
    second.with_suffix(".jpeg").rename(images / "sub" / second.name)
    data = json.loads(annotations.read_text())
    entry = next(im for im in data["images"] if im["file_name"] == second.name)
    entry["file_name"] = f"sub\\{second.name}"
    annotations.write_text(json.dumps(data))
    assert COCODetection(images, annotations).records[1].path == images / "sub" / second.name
    nested = tmp_path / "nested"  # images unpacked one folder too deep
    (nested / "images").mkdir(parents=True)
    images.rename(nested / "images" / "images")
    with pytest.raises(FileNotFoundError, match=r"it is one folder deeper, in .*images/images: point there"):
        COCODetection(nested / "images", annotations)


@pytest.mark.parametrize("mode", ["L", "P", "1", "I;16", "LA"])
def test_index_masks_of_every_single_channel_mode(mode: str, tmp_path: Path) -> None:
    """Masks saved 1-bit or 16-bit (OpenCV, scikit-image, MATLAB) are index masks too, as Pillow reads them."""
    import numpy as np
    from PIL import Image

    from mobiletasks.data.io import voc_palette
    from mobiletasks.data.segmentation.datasets import read_mask

    values = np.zeros((4, 6), np.uint8)
    values[1:3, 2:5] = 1
    if mode == "1":
        image = Image.fromarray(values * 255).convert("1")
    elif mode == "I;16":
        image = Image.fromarray(values.astype(np.uint16))
    elif mode == "LA":  # grayscale with an alpha channel: the alpha is no class
        image = Image.fromarray(values).convert("LA")
    else:
        image = Image.fromarray(values)
        if mode == "P":
            image.putpalette(voc_palette())
    image.save(tmp_path / "mask.png")
    with Image.open(tmp_path / "mask.png") as saved:
        assert saved.mode == mode
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), values)
    if mode == "I;16":
        Image.fromarray(values.astype(np.uint16) * 1000).save(tmp_path / "big.png")
        with pytest.raises(ValueError, match=r"big\.png is a 'I;16' image with values 0\.\.1000"):
            read_mask(tmp_path / "big.png")


@needs_data
@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\xff\xfe0\x001\x00"], ids=["empty", "blank", "utf-16"])
def test_empty_or_unreadable_voc_lists_are_refused_by_name(content: bytes, tmp_path: Path) -> None:
    """An empty val.txt made validate exit 0 with no metric; the segmentation list is read the same way."""
    from user_data import person_ids, voc_copy

    from mobiletasks.data import VOCDetection
    from mobiletasks.data.segmentation.datasets import VOCSegmentation

    root = voc_copy(tmp_path, person_ids(2))
    for kind in ("Main", "Segmentation"):
        (root / "VOC2012" / "ImageSets" / kind / "val.txt").write_bytes(content)
    match = r"val\.txt (lists no images|is not UTF-8 text)"
    with pytest.raises(ValueError, match=match):
        VOCDetection(root, ["2012/val"])
    with pytest.raises(ValueError, match=match):
        VOCSegmentation(root, "val")


def test_celeba_png_release_with_the_official_lists(tmp_path: Path) -> None:
    """CelebA's img_align_celeba_png keeps the .jpg names of the official lists."""
    from celeba_layout import write_celeba
    from PIL import Image

    from mobiletasks.data import CelebADataModule

    root = write_celeba(tmp_path / "celeba")
    png = root / "img_align_celeba_png"
    png.mkdir()
    for jpg in (root / "img_align_celeba").glob("*.jpg"):
        Image.open(jpg).save(png / f"{jpg.stem}.png")
    dataset = CelebADataModule(root, image_dir="img_align_celeba_png", image_size=16, num_workers=0).dataset("train")
    assert len(dataset) and all(p.suffix == ".png" for p in dataset.paths) and dataset[0] is not None


def test_pretrained_backbone_of_a_model_without_one_is_named(tmp_path: Path) -> None:
    from mobiletasks.tasks import ClassificationTask

    path = tmp_path / "v1.pth"
    torch.save(create_model("mobilenet_v1", num_classes=1000).state_dict(), path)
    with pytest.raises(ValueError, match=r"model .mobilenet_v1. has no separate backbone .*with `pretrained`"):
        ClassificationTask("mobilenet_v1", num_classes=5, pretrained_backbone=str(path))
    task = ClassificationTask(
        "classifier", num_classes=5, model_kwargs={"backbone": "mobilenet_v1"}, pretrained_backbone=str(path)
    )
    assert task.model is not None  # the classifier on a backbone takes it


@needs_data
def test_ground_truth_without_boxes_is_undefined_not_zero(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Images but no boxes: pycocotools' -1 (undefined), with a word, also for an empty results file."""

    def no_boxes(data: dict[str, Any]) -> None:
        data["annotations"] = []

    _, annotations = coco_copy(tmp_path, 3, no_boxes)
    _, full = coco_copy(tmp_path / "full", 3)
    for results in (ground_truth_results(full), []):
        path = tmp_path / "results.json"
        path.write_text(json.dumps(results))
        with caplog.at_level(logging.WARNING):
            assert set(evaluate_results_file(annotations, path).values()) == {-1.0}
        assert "no ground-truth box among the 3 images scored: every stat is -1 (undefined)" in caplog.text
        caplog.clear()


@needs_data
def test_data_check_counts_a_split_read_twice_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from user_data import ROOT, person_ids, voc_copy

    ids = person_ids(3)
    root = voc_copy(tmp_path, ids)
    (root / "VOC2012" / "Annotations" / f"{ids[0]}.xml").unlink()
    config = str(ROOT / "configs" / "detection" / "ssdlite_mobilenet_v2_voc.yaml")
    sets = ["--data.init_args.train_sets", "[2012/val]", "--data.init_args.val_sets", "[2012/val]"]
    assert main(["data", "check", "--config", config, "--data.init_args.root", str(root), *sets, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "the same files as train (checked there)" in out and out.rstrip().endswith("1 errors, 0 warnings")
