"""The synthetic shapes dataset: samples, the COCO and VOC writers, ``mobiletasks data synth``, and what the four
Shapes data modules share: ``prepare_data`` that only writes files, ``setup`` that reads them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from mobiletasks.cli import main
from mobiletasks.data.synthetic import (
    MARKER,
    SHAPE_CLASSES,
    ShapeObject,
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    ShapesDetectionDataModule,
    ShapesSegmentationDataModule,
    dataset_exists,
    make_sample,
    read_info,
    sample_rng,
    write_detection_dataset,
    writers,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE, NUM, SEED = 96, 8, 3  # small and fast; 2 val images


def mask_extent(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coco") / "shapes"
    return write_detection_dataset(out, num_images=NUM, image_size=SIZE, seed=SEED, progress=False)


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("voc") / "shapes"
    return write_detection_dataset(out, format="voc", num_images=NUM, image_size=SIZE, seed=SEED, progress=False)


def test_samples_boxes_are_mask_extents() -> None:
    for index in range(20):
        image, objects = make_sample(sample_rng(0, index), 128)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert 1 <= len(objects) <= 6
        for obj in objects:
            assert obj.mask.shape == (128, 128) and obj.mask.dtype == bool
            assert obj.box == mask_extent(obj.mask)
            assert obj.area == obj.mask.sum() > 0
        # visible masks do not overlap: each pixel shows at most one shape
        assert (np.sum([obj.mask for obj in objects], axis=0) <= 1).all()


def test_samples_vary() -> None:
    counts, sides, labels, overlaps = set(), [], set(), 0
    for index in range(40):
        _, objects = make_sample(sample_rng(1, index), 160)
        counts.add(len(objects))
        labels |= {obj.label for obj in objects}
        sides += [max(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) / 160 for obj in objects]
        boxes = np.array([obj.box for obj in objects])
        for i in range(len(boxes)):
            for j in range(i):
                lo, hi = np.maximum(boxes[i, :2], boxes[j, :2]), np.minimum(boxes[i, 2:], boxes[j, 2:])
                overlaps += bool((hi > lo).all())
    assert len(counts) >= 4 and max(counts) <= 6
    assert labels == set(range(len(SHAPE_CLASSES)))
    assert min(sides) < 0.1 and max(sides) > 0.45 and max(sides) <= 0.65
    assert overlaps > 0  # shapes may overlap partially


def test_sample_depends_on_seed_and_index() -> None:
    a, _ = make_sample(sample_rng(0, 5), 64)
    assert np.array_equal(a, make_sample(sample_rng(0, 5), 64)[0])
    assert not np.array_equal(a, make_sample(sample_rng(0, 6), 64)[0])
    assert not np.array_equal(a, make_sample(sample_rng(1, 5), 64)[0])


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools
def test_coco_layout_and_pycocotools(coco_dir: Path) -> None:
    assert dataset_exists(coco_dir, "coco") and not dataset_exists(coco_dir, "voc")
    info = read_info(coco_dir)
    assert info is not None and info["images"] == {"train": 6, "val": 2}
    total = 0
    for split, indices in (("train", range(6)), ("val", range(6, 8))):
        coco = COCO(str(coco_dir / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
        assert coco.getCatIds() == list(range(1, len(SHAPE_CLASSES) + 1))
        assert sorted(coco.getImgIds()) == [i + 1 for i in indices]
        for index in indices:
            img = coco.loadImgs(index + 1)[0]
            path = coco_dir / "images" / split / img["file_name"]
            with Image.open(path) as pil:
                assert pil.size == (img["width"], img["height"]) == (SIZE, SIZE)
                decoded = np.asarray(pil.convert("RGB"), dtype=np.float32)
            # the file holds image `index` of the seed (and no other), and its boxes are the masks' extents
            errors = [np.abs(decoded - make_sample(sample_rng(SEED, i), SIZE)[0]).mean() for i in range(NUM)]
            assert np.argmin(errors) == index and errors[index] < 8  # JPEG
            _, objects = make_sample(sample_rng(SEED, index), SIZE)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
            assert len(anns) == len(objects)
            for ann, obj in zip(anns, objects, strict=True):
                x, y, w, h = ann["bbox"]
                assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
                assert np.allclose([x, y, x + w, y + h], mask_extent(obj.mask), atol=1)
                assert ann["category_id"] == obj.label + 1 and ann["iscrowd"] == 0
                assert ann["area"] == obj.mask.sum()
                # the segmentation (the box's rectangle) holds the mask
                rectangle = coco.annToMask(ann).astype(bool)
                assert rectangle.shape == (SIZE, SIZE) and not (obj.mask & ~rectangle).any()
            total += len(anns)
    assert total == sum(info["objects"].values())


def test_voc_matches_coco(coco_dir: Path, voc_dir: Path) -> None:
    assert dataset_exists(voc_dir, "voc") and not dataset_exists(voc_dir, "coco")
    root = voc_dir / "VOC2012"
    for split in ("train", "val"):
        coco = COCO(str(coco_dir / "annotations" / f"instances_{split}.json"))
        ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert [f"{i}.jpg" for i in ids] == [img["file_name"] for img in coco.loadImgs(sorted(coco.getImgIds()))]
        for image_id, img_id in zip(ids, sorted(coco.getImgIds()), strict=True):
            xml = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
            assert xml.findtext("filename") == f"{image_id}.jpg"
            assert (root / "JPEGImages" / f"{image_id}.jpg").is_file()
            assert [int(xml.findtext(f"size/{k}") or 0) for k in ("width", "height", "depth")] == [SIZE, SIZE, 3]
            voc = []
            for obj in xml.iter("object"):
                assert obj.findtext("difficult") == "0" and obj.findtext("truncated") == "0"
                x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}") or -1) for k in ("xmin", "ymin", "xmax", "ymax"))
                assert 1 <= x0 <= x1 <= SIZE and 1 <= y0 <= y1 <= SIZE  # 1-based, inclusive
                voc.append((obj.findtext("name"), [x0 - 1, y0 - 1, x1, y1]))
            expected = [
                (
                    coco.cats[a["category_id"]]["name"],
                    [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]],
                )
                for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            ]
            assert voc == expected
        # per-class lists, as the devkit writes them
        star = (root / "ImageSets" / "Main" / f"star_{split}.txt").read_text().splitlines()
        assert [line.split()[0] for line in star] == ids
        for line in star:
            image_id, flag = line.split()
            names = {o.findtext("name") for o in ET.parse(root / "Annotations" / f"{image_id}.xml").iter("object")}
            assert flag == ("1" if "star" in names else "-1")


def annotation_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.suffix in (".json", ".xml", ".txt"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize("format", ["coco", "voc"])
def test_deterministic(format: str, tmp_path: Path) -> None:
    def write(name: str, seed: int) -> dict[str, bytes]:
        kwargs = {"format": format, "num_images": 4, "image_size": 64, "seed": seed}
        return annotation_bytes(write_detection_dataset(tmp_path / name, **kwargs, progress=False))  # type: ignore[arg-type]

    a, b, c = write("a", 7), write("b", 7), write("c", 8)
    assert a == b
    assert a.keys() == c.keys() and a != c
    annotations = [k for k in a if k.endswith((".json", ".xml")) and k != MARKER]
    assert annotations and any(a[k] != c[k] for k in annotations)


def test_refuses_foreign_folder_and_replaces_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"mine is not empty and holds no synthetic dataset.*new or empty folder"):
        write_detection_dataset(foreign, num_images=2, image_size=64, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match=r"notes\.txt is a file"):
        write_detection_dataset(foreign / "notes.txt", num_images=2, image_size=64, progress=False)

    # an empty folder is fine, and a dataset written before is replaced, even by the other format
    out = tmp_path / "empty"
    out.mkdir()
    write_detection_dataset(out, num_images=2, image_size=64, progress=False)
    write_detection_dataset(out, format="voc", num_images=3, image_size=64, progress=False)
    assert dataset_exists(out, "voc") and not dataset_exists(out, "coco")
    assert sorted(p.name for p in out.iterdir()) == ["VOC2012", MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]  # no temporary folders left


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[ShapeObject]]:
        calls.append(size)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return make_sample(rng, size)

    monkeypatch.setattr(writers, "make_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        write_detection_dataset(tmp_path / "out", num_images=5, image_size=64, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert not dataset_exists(tmp_path / "out", "coco")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "yolo"}, "format='yolo' is not one of"),
        ({"num_images": 1}, "num_images=1: need an integer >= 2"),
        ({"num_val": 4}, r"num_val=4 must lie in 0..3"),
        ({"val_fraction": 1.0}, "val_fraction=1.0 must lie strictly between 0 and 1"),
        ({"image_size": 16}, "image_size=16 is too small"),
        ({"seed": -1}, "seed=-1 must be a non-negative integer"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str, tmp_path: Path) -> None:
    settings: dict[str, object] = {"num_images": 4, "image_size": 64, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_detection_dataset(tmp_path / "out", **settings)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_cli_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voc"
    argv = ["data", "synth", "--task", "detection", "--format", "voc", "--out", str(out), "--num-images", "5"]
    assert main([*argv, "--image-size", "64", "--seed", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "train      4 images" in printed and "val        1 images" in printed
    assert dataset_exists(out, "voc")
    xml = ET.parse(out / "VOC2012" / "Annotations" / "000005.xml").getroot()
    _, objects = make_sample(sample_rng(2, 4), 64)
    assert [o.findtext("name") for o in xml.iter("object")] == [obj.name for obj in objects]

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").touch()
    argv = ["data", "synth", "--task", "detection", "--format", "coco", "--out", str(tmp_path / "foreign")]
    assert main(argv) == 2
    assert "foreign is not empty" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--task", "classification", "--format", "coco", "--out", str(out)])
    assert exc.value.code == 2
    assert "--task classification writes --format folder, not 'coco'" in capsys.readouterr().err


def test_cli_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "coco"
    argv = ["data", "synth", "--task", "detection", "--format", "coco", "--out", str(out), "--num-images", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "mobiletasks", *argv, "--image-size", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote the synthetic detection dataset (coco, seed 0)" in result.stdout
    assert dataset_exists(out, "coco")
    assert json.loads((out / "annotations" / "instances_val.json").read_text())["images"][0]["id"] == 3


# ---------------------------------------------------------------------------------------------- data modules


SHAPES_MODULES = {
    "detection": lambda root: ShapesDetectionDataModule(root, num_images=4, image_size=32),
    "segmentation": lambda root: ShapesSegmentationDataModule(root, num_images=4, image_size=32, crop_size=32),
    "classification": lambda root: ShapesClassificationDataModule(root, num_images=4, image_size=32),
    "attributes": lambda root: ShapesAttributesDataModule(root, num_images=4, image_size=32),
}


@pytest.mark.parametrize("task", list(SHAPES_MODULES))
def test_shapes_prepare_data_only_writes_files(task: str, tmp_path: Path) -> None:
    dm = SHAPES_MODULES[task](tmp_path / "shapes")
    state = dict(vars(dm))
    dm.prepare_data()
    assert vars(dm) == state  # Lightning runs prepare_data on one process: no state may be set there
    info = read_info(tmp_path / "shapes")
    assert info is not None and (info["task"], info["images"]) == (task, {"train": 3, "val": 1})
    stamp = (tmp_path / "shapes" / MARKER).stat().st_mtime_ns
    dm.setup("validate")  # the dataset is there: read, not written again
    assert (tmp_path / "shapes" / MARKER).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("task", list(SHAPES_MODULES))
def test_shapes_setup_writes_nothing_under_several_processes(task: str, tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    dm = SHAPES_MODULES[task](root)
    dm.trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    with pytest.raises(FileNotFoundError, match=re.escape(f"{root} holds no synthetic {task} dataset")) as error:
        dm.setup("validate")  # every process would write the dataset at once
    command = f"mobiletasks data synth --task {task} --format {dm.layout.format} --out {root} --num-images 4"
    assert "call prepare_data() on one process first" in str(error.value) and command in str(error.value)
    assert not root.exists()
    dm.prepare_data()
    dm.setup("validate")
    assert len(dm.dataset("val")) == 1
