"""The synthetic classification (ImageFolder) and attribute (CelebA) datasets, their CLI and data modules."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from mobiletasks.cli import main
from mobiletasks.data.classification.celeba import read_attributes, read_partition
from mobiletasks.data.synthetic import (
    ATTRIBUTE_NAMES,
    CLASSIFICATION_CLASSES,
    MARKER,
    SHAPE_CLASSES,
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    classification_label,
    classification_sample,
    make_sample,
    read_info,
    sample_rng,
    shape_attributes,
    write_attributes_dataset,
    write_classification_dataset,
)
from mobiletasks.data.synthetic.classification import LARGE_SIDE, MANY_SHAPES, SMALL_SIDE, TOP

SIZE, NUM, SEED = 48, 12, 5  # 10 train and 2 val images


@pytest.fixture(scope="module")
def folder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("folder") / "shapes"
    return write_classification_dataset(out, num_images=NUM, image_size=SIZE, seed=SEED, progress=False)


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("celeba") / "shapes"
    return write_attributes_dataset(out, num_images=NUM, image_size=SIZE, seed=SEED, progress=False)


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.size == (SIZE, SIZE)
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def assert_holds(path: Path, index: int, images: list[np.ndarray]) -> None:
    """The file holds ``images[index]`` (through JPEG), and no other of ``images``."""
    errors = [np.abs(decoded(path) - image).mean() for image in images]
    assert np.argmin(errors) == index and errors[index] < 12, (path, errors)


def expected_attributes(objects: list, size: int) -> list[int]:
    """The attributes as the module doc defines them, computed here from the shapes."""
    labels = {o.label for o in objects}
    sides = [max(o.box[2] - o.box[0], o.box[3] - o.box[1]) for o in objects]
    centers = [(o.box[1] + o.box[3]) / 2 for o in objects]
    flags = [label in labels for label in range(len(SHAPE_CLASSES))] + [
        len(objects) >= MANY_SHAPES,
        max(sides) > LARGE_SIDE * size,
        min(sides) < SMALL_SIDE * size,
        min(centers) < TOP * size,
    ]
    return [1 if flag else -1 for flag in flags]


# ---------------------------------------------------------------------------------------------- classification


def test_classification_samples() -> None:
    for index in range(10):
        label = classification_label(0, index)
        image, objects = classification_sample(sample_rng(0, index), 64, label)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        (shape,) = objects
        assert shape.label == label and shape.mask.any()
        side = max(shape.box[2] - shape.box[0], shape.box[3] - shape.box[1])
        assert 0.15 * 64 <= side <= 64  # large enough to classify
        # the shape stands out from the background around it
        assert np.abs(image[shape.mask].mean(0) - image[~shape.mask].mean(0)).max() > 20


def test_classification_labels_balanced() -> None:
    labels = [classification_label(3, i) for i in range(100)]
    for block in range(0, 100, 5):
        assert sorted(labels[block : block + 5]) == [0, 1, 2, 3, 4]
    assert labels != [classification_label(4, i) for i in range(100)]  # the seed shuffles
    assert len({tuple(labels[i : i + 5]) for i in range(0, 100, 5)}) > 10  # and so does the block


def test_classification_layout(folder_dir: Path) -> None:
    info = read_info(folder_dir)
    assert info is not None and info["task"] == "classification" and info["format"] == "folder"
    assert info["classes"] == list(CLASSIFICATION_CLASSES) == sorted(SHAPE_CLASSES)
    assert info["images"] == {"train": 10, "val": 2}
    assert sorted(p.name for p in folder_dir.iterdir()) == sorted([MARKER, "train", "val"])
    files = sorted(p.relative_to(folder_dir).as_posix() for p in folder_dir.rglob("*.jpg"))
    assert len(files) == NUM
    for name in files:
        assert re.fullmatch(r"(train|val)/(circle|square|triangle|star|cross)/\d{6}\.jpg", name), name
    labels = [classification_label(SEED, index) for index in range(NUM)]
    images = [classification_sample(sample_rng(SEED, i), SIZE, label)[0] for i, label in enumerate(labels)]
    for index, label in enumerate(labels):
        split = "train" if index < 10 else "val"
        assert_holds(folder_dir / split / SHAPE_CLASSES[label] / f"{index + 1:06d}.jpg", index, images)


def test_classification_reads_as_torchvision_image_folder(folder_dir: Path) -> None:
    dataset = ImageFolder(str(folder_dir / "train"))
    assert dataset.classes == list(CLASSIFICATION_CLASSES)
    for path, target in dataset.samples:
        index = int(Path(path).stem) - 1
        assert dataset.classes[target] == SHAPE_CLASSES[classification_label(SEED, index)]
    assert Counter(dataset.targets) == dict.fromkeys(range(5), 2)  # 10 train images, two of each class


def test_classification_balanced_splits(tmp_path: Path) -> None:
    root = write_classification_dataset(tmp_path / "c", num_images=50, num_val=10, image_size=32, progress=False)
    for split, per_class in (("train", 8), ("val", 2)):
        counts = {name: len(list((root / split / name).glob("*.jpg"))) for name in SHAPE_CLASSES}
        assert counts == dict.fromkeys(SHAPE_CLASSES, per_class)


# ---------------------------------------------------------------------------------------------- attributes


def test_attribute_names() -> None:
    assert ATTRIBUTE_NAMES[:5] == ("Has_Circle", "Has_Square", "Has_Triangle", "Has_Star", "Has_Cross")
    for name in ATTRIBUTE_NAMES:  # CelebA style, and nothing about left or right (flips keep labels)
        assert re.fullmatch(r"[A-Z][a-z]+(_[A-Z][a-z]+)*", name), name
        assert "Left" not in name and "Right" not in name


def test_attribute_rates() -> None:
    """Every attribute is positive in some images and negative in others (the module doc gives the rates)."""
    values = np.array([shape_attributes(make_sample(sample_rng(0, i), 64)[1], 64) for i in range(150)])
    assert values.shape == (150, len(ATTRIBUTE_NAMES)) and values.dtype == bool
    rates = values.mean(0)
    assert (rates > 0.2).all() and (rates < 0.8).all(), dict(zip(ATTRIBUTE_NAMES, rates.round(2), strict=True))


def test_celeba_layout_exactly(celeba_dir: Path) -> None:
    info = read_info(celeba_dir)
    assert info is not None and info["task"] == "attributes" and info["format"] == "celeba"
    assert info["classes"] == list(ATTRIBUTE_NAMES) and info["images"] == {"train": 10, "val": 2}
    assert sorted(p.name for p in celeba_dir.iterdir()) == sorted(
        [MARKER, "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"]
    )
    names = [f"{i:06d}.jpg" for i in range(1, NUM + 1)]
    assert sorted(p.name for p in (celeba_dir / "img_align_celeba").iterdir()) == names

    text = (celeba_dir / "list_attr_celeba.txt").read_text()
    assert text.endswith("\n") and "\r" not in text
    lines = text.split("\n")[:-1]
    assert lines[0] == str(NUM)
    assert lines[1] == " ".join(ATTRIBUTE_NAMES) + " "  # the official trailing space
    assert len(lines) == NUM + 2
    images = [make_sample(sample_rng(SEED, index), SIZE)[0] for index in range(NUM)]
    for index, line in enumerate(lines[2:]):
        # "000001.jpg -1  1  1 ...": the name, then per attribute a space and the value right-aligned in 2 columns
        assert len(line) == 10 + 3 * len(ATTRIBUTE_NAMES)
        assert line[:10] == names[index]
        cells = [line[10 + 3 * k : 13 + 3 * k] for k in range(len(ATTRIBUTE_NAMES))]
        assert set(cells) <= {" -1", "  1"}, line
        _, objects = make_sample(sample_rng(SEED, index), SIZE)
        assert [int(c) for c in cells] == expected_attributes(objects, SIZE)
        assert_holds(celeba_dir / "img_align_celeba" / names[index], index, images)

    partition = (celeba_dir / "list_eval_partition.txt").read_text()
    assert partition == "".join(f"{name} {0 if i < 10 else 1}\n" for i, name in enumerate(names))


def test_celeba_presence_matches_drawn_shapes(celeba_dir: Path) -> None:
    """Cross-check with the CelebA reader: Has_<shape> is the set of shapes make_sample drew."""
    names, files, values = read_attributes(celeba_dir / "list_attr_celeba.txt")
    assert names == list(ATTRIBUTE_NAMES) and files == [f"{i:06d}.jpg" for i in range(1, NUM + 1)]
    assert set(read_partition(celeba_dir / "list_eval_partition.txt").values()) == {0, 1}
    for index, row in enumerate(values):
        _, objects = make_sample(sample_rng(SEED, index), SIZE)
        present = {name for name, v in zip(SHAPE_CLASSES, row[:5], strict=True) if v == 1}
        assert present == {o.name for o in objects}


# ---------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize("write", [write_classification_dataset, write_attributes_dataset])
def test_deterministic(write: Callable[..., Path], tmp_path: Path) -> None:
    def files(name: str, seed: int) -> dict[str, bytes]:
        return all_bytes(write(tmp_path / name, num_images=6, image_size=32, seed=seed, progress=False))

    a, b, c = files("a", 1), files("b", 1), files("c", 2)
    assert a == b
    assert a != c


@pytest.mark.parametrize("write", [write_classification_dataset, write_attributes_dataset])
def test_refuses_foreign_folder(write: Callable[..., Path], tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"mine is not empty and holds no synthetic dataset.*new or empty folder"):
        write(foreign, num_images=4, image_size=32, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="format='coco' is not one of"):
        write(tmp_path / "out", format="coco", num_images=4, image_size=32, progress=False)


def test_replaces_own_dataset(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    write_classification_dataset(out, num_images=5, image_size=32, progress=False)
    write_attributes_dataset(out, num_images=3, image_size=32, progress=False)  # another task: replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no temporary folders left


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_classification(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cls"
    argv = ["data", "synth", "--task", "classification", "--out", str(out), "--num-images", "10"]
    assert main([*argv, "--image-size", "48", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote the synthetic classification dataset (folder, seed 0)" in printed
    assert "train      8 images" in printed and "val        2 images" in printed
    assert "classes: circle, cross, square, star, triangle" in printed
    assert len(list(out.glob("*/*/*.jpg"))) == 10
    info = read_info(out)
    assert info is not None and info["image_size"] == 48


def test_cli_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "attr"
    argv = ["data", "synth", "--task", "attributes", "--format", "celeba", "--out", str(out), "--num-images", "10"]
    assert main([*argv, "--image-size", "48", "--seed", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote the synthetic attributes dataset (celeba, seed 2)" in printed
    assert "attributes: Has_Circle, Has_Square" in printed
    assert (out / "list_attr_celeba.txt").read_text().startswith("10\nHas_Circle ")
    assert len(list((out / "img_align_celeba").glob("*.jpg"))) == 10


def test_cli_default_image_size(tmp_path: Path) -> None:
    out = tmp_path / "attr"
    assert main(["data", "synth", "--task", "attributes", "--out", str(out), "--num-images", "2", "--quiet"]) == 0
    info = read_info(out)
    assert info is not None and info["image_size"] == 64  # the task's default, not detection's 320


@pytest.mark.parametrize(
    ("task", "format", "wants"), [("classification", "coco", "folder"), ("attributes", "voc", "celeba")]
)
def test_cli_format_mismatch(
    task: str, format: str, wants: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--task", task, "--format", format, "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert f"--task {task} writes --format {wants}, not '{format}'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------- data modules


def test_shapes_classification_data_module(tmp_path: Path) -> None:
    root = tmp_path / "cls"
    dm = ShapesClassificationDataModule(root, num_images=10, image_size=32, batch_size=4, num_workers=0)
    assert dm.class_names == list(CLASSIFICATION_CLASSES) and dm.num_classes == 5  # before the files exist
    assert not root.exists()
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert targets["labels"].dtype == torch.int64 and targets["labels"].shape == (4,)
    for name, label in zip(targets["file_name"], targets["labels"].tolist(), strict=True):
        assert name.split("/")[0] == dm.class_names[label]
    val = dm.dataset("val")
    assert len(val) == 2 and len(dm.dataset("train")) == 8
    dm.setup("test")
    assert len(dm.dataset("test")) == 2  # the val split
    first = (root / MARKER).stat().st_mtime_ns
    ShapesClassificationDataModule(root, num_images=10, image_size=32, num_workers=0).setup("validate")
    assert (root / MARKER).stat().st_mtime_ns == first  # the same settings: not written again


def test_shapes_attributes_data_module(tmp_path: Path) -> None:
    root = tmp_path / "attr"
    dm = ShapesAttributesDataModule(root, num_images=10, image_size=32, batch_size=4, num_workers=0)
    assert dm.multi_label and dm.class_names == list(ATTRIBUTE_NAMES)  # before the files exist
    assert not root.exists()
    dm.setup("fit")
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (2, 3, 32, 32)
    assert targets["labels"].shape == (2, len(ATTRIBUTE_NAMES)) and targets["labels"].dtype == torch.float32
    assert targets["file_name"] == ["000009.jpg", "000010.jpg"]
    for row, index in zip(targets["labels"], (8, 9), strict=True):
        _, objects = make_sample(sample_rng(0, index), 32)
        assert (row * 2 - 1).int().tolist() == expected_attributes(objects, 32)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and targets["labels"].shape == (4, len(ATTRIBUTE_NAMES))
    dm.setup("test")
    assert len(dm.dataset("test")) == 2  # no test partition: the val split

    some = ShapesAttributesDataModule(tmp_path / "some", num_images=10, image_size=32, attributes=["Has_Star"])
    assert some.class_names == ["Has_Star"]
    with pytest.raises(ValueError, match=r"attributes \['Smiling'\] are not shape attributes"):
        _ = ShapesAttributesDataModule(tmp_path / "x", attributes=["Smiling"]).class_names
