"""``mobiletasks data check``: each bad-input kind built in a temporary folder from copies of the real coco128 /
voc128 files, with the documented finding and exit code, and never a Python traceback."""

# ruff: noqa: E501  (the tables of cases read better one case a line)
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from user_data import ROOT, binary_person_mask, coco_copy, needs_data, person_ids, voc_copy

from mobiletasks.cli import main

pytestmark = needs_data


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["data", "check", *args, "--quiet"])
    out = capsys.readouterr()
    return code, out.out + out.err


def first_image(data: dict[str, Any]) -> dict[str, Any]:
    return data["images"][0]


def rewrite(images: Path, annotations: Path, change: Callable[[Image.Image], Image.Image]) -> str:
    """Re-save the first image of the json through ``change``; its file name."""
    name = first_image(json.loads(annotations.read_text()))["file_name"]
    with Image.open(images / name) as image:
        changed = change(image.convert("RGB"))
    changed.save(images / name, format="PNG" if changed.mode in ("I;16", "RGBA") else "JPEG")
    return str(name)


def edit_json(annotations: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(annotations.read_text())
    edit(data)
    annotations.write_text(json.dumps(data))


def rotated(image: Image.Image) -> Image.Image:
    """The pixels turned a quarter, with the EXIF tag (6) that turns them back: the upright size is the original."""
    turned = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.info["exif"] = exif.tobytes()
    return turned


def save_rotated(images: Path, annotations: Path, upright_in_json: bool) -> str:
    name = first_image(json.loads(annotations.read_text()))["file_name"]
    with Image.open(images / name) as image:
        turned = rotated(image.convert("RGB"))
        turned.save(images / name, exif=turned.info["exif"])
    if not upright_in_json:  # the stored (sideways) size in the annotation: a converter that ignored EXIF
        width, height = turned.size

        def sideways(data: dict[str, Any]) -> None:
            first_image(data).update(width=width, height=height)

        edit_json(annotations, sideways)
    return str(name)


def truncate(images: Path, annotations: Path) -> str:
    name = first_image(json.loads(annotations.read_text()))["file_name"]
    data = (images / name).read_bytes()
    (images / name).write_bytes(data[: len(data) // 2])
    return str(name)


def not_an_image(images: Path, annotations: Path) -> str:
    name = first_image(json.loads(annotations.read_text()))["file_name"]
    (images / name).write_text("this is not a picture")
    return str(name)


def missing(images: Path, annotations: Path) -> str:
    name = first_image(json.loads(annotations.read_text()))["file_name"]
    (images / name).unlink()
    return str(name)


def json_edit(edit: Callable[[dict[str, Any]], None], shown: str) -> Callable[[Path, Path], str]:
    def apply(images: Path, annotations: Path) -> str:
        edit_json(annotations, edit)
        return shown

    return apply


def set_box(box: list[float]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0]["bbox"] = box

    return edit


def wrong_size(data: dict[str, Any]) -> None:
    first_image(data)["width"] += 10


def unknown_image(data: dict[str, Any]) -> None:
    data["annotations"][0]["image_id"] = 123456789


def unknown_category(data: dict[str, Any]) -> None:
    data["annotations"][0]["category_id"] = 1000


def float_image_id(data: dict[str, Any]) -> None:
    first_image(data)["id"] = 1.5


def without_annotations(data: dict[str, Any]) -> None:
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first_image(data)["id"]]


def nan_box(annotations: Path) -> None:
    text = json.dumps(json.loads(annotations.read_text()))
    first = json.loads(text)["annotations"][0]["bbox"]
    annotations.write_text(text.replace(json.dumps(first), "[NaN, 1.0, 2.0, 3.0]", 1))


COCO_CASES: dict[str, tuple[Callable[[Path, Path], str], int, str]] = {
    # name: (make the problem, returning what the report shows; exit code; the finding or message)
    "truncated": (truncate, 1, r"error\s+1  unreadable, truncated or non-image files \[unreadable\]"),
    "not an image": (not_an_image, 1, r"\[unreadable\].*\n.*cannot identify image file"),
    "missing file": (missing, 1, r"error\s+1  files listed but missing \[missing\]"),
    "size disagrees": (json_edit(wrong_size, ""), 1, r"\[size\]\n.*is \d+x\d+, annotated \d+x\d+"),
    "grayscale": (lambda i, a: rewrite(i, a, lambda im: im.convert("L")), 0, r"warning\s+\d+  images not stored as 8-bit RGB.*\n.*\(L\)"),
    "rgba": (lambda i, a: rewrite(i, a, lambda im: im.convert("RGBA")), 0, r"\[converted\]\n(.*\n)*.*\(RGBA\)"),
    "cmyk": (lambda i, a: rewrite(i, a, lambda im: im.convert("CMYK")), 0, r"\[converted\]\n(.*\n)*.*\(CMYK\)"),
    "16-bit": (
        lambda i, a: rewrite(i, a, lambda im: Image.fromarray(np.asarray(im.convert("L"), np.uint16) * 257)),
        0,
        r"\[converted\]\n(.*\n)*.*\(I;16\)",
    ),
    "exif rotated, upright in json": (lambda i, a: save_rotated(i, a, True), 0, r"warning\s+1  images turned by their EXIF orientation"),
    "exif rotated, sideways in json": (lambda i, a: save_rotated(i, a, False), 1, r"\[size\]"),
    "box out of bounds": (json_edit(set_box([-20.0, -20.0, 100.0, 100.0]), ""), 0, r"warning\s+1  boxes partly outside their image \[clipped\]"),
    "degenerate box": (json_edit(set_box([10.0, 10.0, 0.0, 5.0]), ""), 0, r"warning\s+1  boxes without area \[degenerate\]"),
    "nan box": (lambda i, a: (nan_box(a), "")[1], 1, r"\[setup\]\n.*bbox \[nan, 1\.0, 2\.0, 3\.0\]; a COCO bbox is four finite numbers"),
    "infinite box": (json_edit(set_box([0, 0, 1e400, 5]), ""), 1, r"bbox \[0, 0, inf, 5\]; a COCO bbox is four finite"),
    "unknown image id": (json_edit(unknown_image, ""), 1, r"refers to image_id 123456789 \(int\), which is not in 'images'"),
    "unknown category": (json_edit(unknown_category, ""), 1, r"category_id 1000 \(int\), which is not among"),
    "float image id": (json_edit(float_image_id, ""), 1, r"entry 0 of 'images' has id 1\.5 \(float\)"),
    "image without objects": (json_edit(without_annotations, ""), 0, r"info\s+1  images without objects \[empty\]"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_coco_matrix(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = coco_copy(tmp_path, 3)
    make, code, pattern = COCO_CASES[case]
    shown = make(images, annotations)
    exit_code, out = run(capsys, "coco", "--images", str(images), "--annotations", str(annotations))
    assert (exit_code, "Traceback" in out) == (code, False), out
    assert re.search(pattern, out), out
    assert shown in out and out.rstrip().endswith("warnings")
    assert ("images checked" in out) == ("[setup]" not in out)  # a split that cannot be built is not scanned


def test_coco_clean_copy_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = coco_copy(tmp_path, 3)
    code, out = run(capsys, "coco", "--images", str(images), "--annotations", str(annotations))
    assert code == 0 and re.search(r"coco\s+3  images checked", out) and "0 errors, 0 warnings" in out


def bigger(values: np.ndarray) -> np.ndarray:
    return np.pad(values, ((0, 7), (0, 5)))


VOC_CASES: dict[str, tuple[Callable[[np.ndarray], np.ndarray] | None, Callable[[Path], None] | None, str]] = {
    "value outside the classes": (lambda v: np.where(v == 15, 30, v), None, r"\[mask_values\]\n.*holds pixel values \[30\]"),
    "mask of another size": (bigger, None, r"error\s+\d+  masks of another size than their image \[mask_size\]"),
    "binary 0/255": (binary_person_mask, None, r"\[mask_255\]\n.*hold only the values 0 and 255.*255 means 'ignore'"),
    "colour mask": (
        None,
        lambda root: next((root / "VOC2012" / "SegmentationClass").glob("*.png")).write_bytes(
            _png(Image.new("RGB", (640, 480), (128, 0, 0)))
        ),
        r"\[mask_values\]\n.*is a 'RGB' image; segmentation masks must be single-channel",
    ),
    "unknown class in the xml": (
        None,
        lambda root: _replace_in_first(root / "VOC2012" / "Annotations", "<name>person</name>", "<name>persn</name>"),
        r"\[setup\]\n.*has class 'persn', which is not among the classes",
    ),
    "missing mask": (
        None,
        lambda root: next((root / "VOC2012" / "SegmentationClass").glob("*.png")).unlink(),
        r"files listed but missing \[missing\]",
    ),
}  # fmt: skip


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _replace_in_first(folder: Path, old: str, new: str) -> None:
    path = next(p for p in sorted(folder.glob("*.xml")) if old in p.read_text())
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("case", list(VOC_CASES))
def test_voc_matrix(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change_mask, change_files, pattern = VOC_CASES[case]
    root = voc_copy(tmp_path, person_ids(3), change_mask)
    if change_files is not None:
        change_files(root)
    code, out = run(capsys, "voc", "--root", str(root), "--split", "val")
    assert code == 1 and "Traceback" not in out, out
    assert re.search(pattern, out), out


def test_voc_clean_copy_and_a_missing_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = voc_copy(tmp_path, person_ids(3))
    code, out = run(capsys, "voc", "--root", str(root), "--split", "val")
    assert code == 0 and "val/boxes" in out and "val/masks" in out and "0 errors" in out
    code, out = run(capsys, "voc", "--root", str(root), "--split", "trainval")
    assert code == 1 and "neither" in out and "ImageSets/Main/trainval.txt" in out


def test_config_of_any_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "configs" / "classification" / "quickstart.yaml")
    small = ["--data.init_args.num_images", "20", "--data.init_args.image_size", "32"]
    code, out = run(capsys, "--config", config, *small)
    assert code == 0 and "train" in out and "val" in out and "0 errors" in out
    broken = sorted((tmp_path / "data" / "shapes-cls" / "train").rglob("*.jpg"))[0]
    broken.write_bytes(b"\xff\xd8 half a jpeg")
    code, out = run(capsys, "--config", config, *small)
    assert code == 1 and "[unreadable]" in out and broken.name in out
    segmentation = str(ROOT / "configs" / "segmentation" / "deeplabv3_mobilenet_v2_voc.yaml")
    root = voc_copy(tmp_path / "voc", person_ids(3), binary_person_mask)
    voc = [
        "--data.init_args.root",
        str(root),
        "--data.init_args.train_split",
        "val",
        "--data.init_args.classes",
        "[person]",
    ]
    code, out = run(capsys, "--config", segmentation, *voc)
    assert code == 1 and "[mask_255]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "nowhere.yaml"], "config nowhere.yaml does not exist"),
        (
            ["--config", str(ROOT / "configs" / "detection" / "quickstart.yaml"), "--trainer.max_epochs", "2"],
            "only --data",
        ),
        (["coco", "--images", "x"], "required: --annotations"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code, out = run(capsys, *args)
    except SystemExit as exit:  # argparse's own errors
        code, out = int(exit.code or 0), capsys.readouterr().err
    assert code == 2 and message in out


def test_list_entries_without_annotation_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id whose XML is missing fails fit; data check lists it as missing rather than passing over it."""
    ids = person_ids(3)
    root = voc_copy(tmp_path, ids)
    (root / "VOC2012" / "Annotations" / f"{ids[0]}.xml").unlink()
    code, out = run(capsys, "voc", "--root", str(root), "--split", "val")
    assert code == 1 and re.search(r"val/boxes\s+error\s+1  files listed but missing \[missing\]", out), out
    assert f"Annotations/{ids[0]}.xml" in out


def test_binary_masks_read_through_the_coco_class_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default COCO map makes 255 background: 0/255 masks would silently train on background alone."""
    from mobiletasks.data import COCOSegmentationDataModule

    root = voc_copy(tmp_path, person_ids(3), binary_person_mask) / "VOC2012"
    folders = ("JPEGImages", "SegmentationClass", "JPEGImages", "SegmentationClass")
    with pytest.raises(ValueError, match=r"hold only the values 0 and 255.*255 is background here"):
        COCOSegmentationDataModule(root, *folders, crop_size=64, num_workers=0).dataset("train")
    config = tmp_path / "cocoseg.yaml"
    config.write_text(
        "data:\n  class_path: mobiletasks.data.COCOSegmentationDataModule\n  init_args:\n"
        f"    root: {root}\n    train_images: JPEGImages\n    train_masks: SegmentationClass\n"
        "    val_images: JPEGImages\n    val_masks: SegmentationClass\n"
        "model:\n  class_path: mobiletasks.tasks.SegmentationTask\n"
    )
    code, out = run(capsys, "--config", str(config))
    assert code == 1 and "[mask_255]" in out and "val" in out and "the same files as train" in out
