"""Stanford Dogs and CUB-200-2011 data modules on tiny copies of the official layouts (tests/official_layouts.py):
labels and class names as the official files give them, splits, batches, box crops, and the errors."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch
from official_layouts import class_color, write_cub, write_stanford_dogs
from PIL import Image

from mobiletasks.data.classification.base import ClassificationDataModule, ClassificationDataset
from mobiletasks.data.classification.fine_grained import CUBDataModule, StanfordDogsDataModule, read_dogs_list
from mobiletasks.data.io import read_image

BREEDS = ("Chihuahua", "Maltese_dog", "beagle")
BIRDS = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross")
LOADER: dict[str, Any] = {"image_size": 32, "batch_size": 4, "num_workers": 0}


@pytest.fixture
def dogs(tmp_path: Path) -> Path:
    return write_stanford_dogs(tmp_path / "dogs", BREEDS)


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    return write_cub(tmp_path / "cub", BIRDS)


def mat_list(path: Path) -> tuple[list[str], list[int]]:
    """A Stanford Dogs list read the way the official README describes it: file_list cells and 1-based labels."""
    mat = scipy.io.loadmat(path)
    return [cell[0] for cell in mat["file_list"][:, 0]], [int(x) for x in mat["labels"][:, 0]]


def save_list(path: Path, files: list[str], labels: list[float]) -> None:
    cells = np.empty((len(files), 1), dtype=object)
    cells[:, 0] = files
    scipy.io.savemat(path, {"file_list": cells, "labels": np.asarray(labels, np.float64).reshape(-1, 1)})


def sample(dataset: ClassificationDataset, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
    item = dataset[index]
    assert item is not None, f"sample {index} was skipped"
    return item


def cub_rows(folder: Path, name: str) -> dict[int, list[str]]:
    return {int(line.split()[0]): line.split()[1:] for line in (folder / name).read_text().splitlines()}


# ------------------------------------------------------------------------------------------- Stanford Dogs


def test_dogs_labels_classes_and_splits(dogs: Path) -> None:
    dm = StanfordDogsDataModule(dogs, **LOADER)
    assert dm.class_names == list(BREEDS) and dm.num_classes == 3
    for split, name, size in (("train", "train_list.mat", 9), ("test", "test_list.mat", 6)):
        files, labels = mat_list(dogs / "lists" / name)
        dataset = dm.dataset(split)
        assert len(dataset) == size
        assert dataset.file_names == files
        assert dataset.targets is not None and (dataset.targets + 1).tolist() == labels
        for file, label in zip(files, dataset.targets, strict=True):  # the class name is the folder's breed
            assert file.split("/")[0].endswith("-" + dm.class_names[label])
    test_files = dm.dataset("test").file_names
    assert dm.dataset("val").file_names == dm.dataset("predict").file_names == test_files


def test_dogs_class_names_without_images(dogs: Path) -> None:
    """LightningCLI reads num_classes at start-up: only train_list.mat is needed for it."""
    shutil.rmtree(dogs / "Images")
    (dogs / "lists" / "test_list.mat").unlink()
    dm = StanfordDogsDataModule(dogs)
    assert dm.num_classes == 3 and dm.hparams["root"] == str(dogs)  # plain data in checkpoints
    with pytest.raises(FileNotFoundError, match=r"test_list\.mat .*lists\.tar"):
        dm.dataset("val")


def test_dogs_label_order_comes_from_the_lists(dogs: Path, tmp_path: Path) -> None:
    root = write_stanford_dogs(tmp_path / "hyphen", ("Shih-Tzu", "beagle", "Afghan_hound"))
    swap = {1: 3, 3: 1, 2: 2}  # labels that do not follow the folders' order
    for name in ("train_list.mat", "test_list.mat"):
        files, labels = mat_list(root / "lists" / name)
        save_list(root / "lists" / name, files, [swap[label] for label in labels])
    dm = StanfordDogsDataModule(root, **LOADER)
    assert dm.class_names == ["Afghan_hound", "beagle", "Shih-Tzu"]
    dataset = dm.dataset("test")
    assert dataset.targets is not None
    for label, name in zip(dataset.targets, dataset.file_names, strict=True):
        assert name.split("/")[0].split("-", 1)[1] == dm.class_names[label]


def test_dogs_lists_unpacked_into_root(dogs: Path) -> None:
    for path in (dogs / "lists").iterdir():
        path.rename(dogs / path.name)
    (dogs / "lists").rmdir()
    dm = StanfordDogsDataModule(dogs, **LOADER)
    assert len(dm.dataset("train")) == 9 and dm.class_names == list(BREEDS)


def test_read_dogs_list(dogs: Path) -> None:
    files, labels = read_dogs_list(dogs / "lists" / "file_list.mat")
    assert len(files) == 15 and labels.dtype == np.int64 and sorted(set(labels.tolist())) == [0, 1, 2]


def _edit_list(name: str, edit: Callable[[list[str], list[float]], None]) -> Callable[[Path], object]:
    def apply(root: Path) -> None:
        files, labels = mat_list(root / "lists" / name)
        values = [float(label) for label in labels]
        edit(files, values)
        save_list(root / "lists" / name, files, values)

    return apply


def _set(values: list, index: int, value: object) -> None:
    values[index] = value


DOGS_ERRORS: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    (
        "no list",
        lambda r: (r / "lists" / "train_list.mat").unlink(),
        FileNotFoundError,
        r"train_list\.mat .*lists\.tar",
    ),
    ("no Images", lambda r: shutil.rmtree(r / "Images"), FileNotFoundError, r"Images does not exist.*images\.tar"),
    (
        "no image",
        lambda r: sorted((r / "Images").glob("*-beagle/*.jpg"))[-1].unlink(),  # a test image
        FileNotFoundError,
        r"1 Stanford Dogs images are missing: .*-beagle/.*images\.tar",
    ),
    (
        "corrupt",
        lambda r: (r / "lists" / "train_list.mat").write_bytes(b"MATLAB? no"),
        ValueError,
        r"train_list\.mat is not a readable MATLAB file",
    ),
    (
        "no labels",
        lambda r: scipy.io.savemat(r / "lists" / "test_list.mat", {"file_list": np.zeros((1, 1))}),
        ValueError,
        r"test_list\.mat lacks the variable file_list or labels",
    ),
    (
        "label in two folders",
        _edit_list("train_list.mat", lambda files, labels: _set(labels, 8, 1.0)),
        ValueError,
        r"train_list\.mat: label 1 is given to files in two folders, n02085620-Chihuahua and n02085820-beagle",
    ),
    (
        "label absent",
        _edit_list("train_list.mat", lambda files, labels: labels.__setitem__(slice(6, 9), [4.0] * 3)),
        ValueError,
        r"train_list\.mat: labels must be 1\.\.K, but no file has label 3",
    ),
    (
        "fractional label",
        _edit_list("train_list.mat", lambda files, labels: _set(labels, 0, 1.5)),
        ValueError,
        r"train_list\.mat: labels must be 1, 2, \.\.\., got 1\.5",
    ),
    (
        "no folder",
        _edit_list("train_list.mat", lambda files, labels: _set(files, 0, "x.jpg")),
        ValueError,
        r"train_list\.mat: file 'x\.jpg' is not '<wnid>-<breed>/<image>\.jpg'",
    ),
    (
        "test disagrees",
        _edit_list("test_list.mat", lambda files, labels: labels.__setitem__(slice(0, 4), [2.0, 2.0, 1.0, 1.0])),
        ValueError,
        r"test_list\.mat: label 2 is folder n02085620-Chihuahua, but in train_list\.mat it is n02085720-Maltese_dog",
    ),
]


@pytest.mark.parametrize(
    ("edit", "error", "match"), [case[1:] for case in DOGS_ERRORS], ids=[c[0] for c in DOGS_ERRORS]
)
def test_dogs_errors(dogs: Path, edit: Callable[[Path], object], error: type[Exception], match: str) -> None:
    edit(dogs)
    with pytest.raises(error, match=match):
        StanfordDogsDataModule(dogs).dataset("test")


# ------------------------------------------------------------------------------------------------ CUB


def test_cub_labels_classes_and_splits(cub: Path) -> None:
    dm = CUBDataModule(cub, **LOADER)
    assert dm.class_names == list(BIRDS)
    images, labels = cub_rows(cub, "images.txt"), cub_rows(cub, "image_class_labels.txt")
    is_train = cub_rows(cub, "train_test_split.txt")
    for split, flag, size in (("train", "1", 9), ("test", "0", 6)):
        ids = [i for i in sorted(images) if is_train[i] == [flag]]
        dataset = dm.dataset(split)
        assert len(dataset) == size
        assert dataset.file_names == [images[i][0] for i in ids]
        assert dataset.targets is not None and dataset.targets.tolist() == [int(labels[i][0]) - 1 for i in ids]
        assert dataset.boxes is None
    assert dm.dataset("val").file_names == dm.dataset("predict").file_names == dm.dataset("test").file_names


def test_cub_root_is_the_folder_or_its_parent(cub: Path) -> None:
    a, b = CUBDataModule(cub), CUBDataModule(cub.parent)
    assert a.folder == b.folder == cub
    assert a.dataset("test").file_names == b.dataset("test").file_names


def test_cub_crop_to_bbox(cub: Path) -> None:
    boxes = cub_rows(cub, "bounding_boxes.txt")
    plain = CUBDataModule(cub, augment=False, **LOADER)
    dm = CUBDataModule(cub, crop_to_bbox=True, augment=False, **LOADER)
    dataset = dm.dataset("train")
    assert dataset.boxes is not None and dataset.boxes.shape == (9, 4) and dataset.targets is not None
    for k in range(len(dataset)):
        image_id = int(dataset.paths[k].stem.rsplit("_", 1)[1])
        x, y, w, h = (float(v) for v in boxes[image_id])
        np.testing.assert_allclose(dataset.boxes[k], [x, y, x + w, y + h])
        region = read_image(dataset.paths[k])[int(y) : int(y + h), int(x) : int(x + w)]
        image = sample(dataset, k)[0]
        torch.testing.assert_close(image, dataset.transform(region))  # the crop, then the eval transform
        cropped, box_mean = image.mean((1, 2)).numpy() * 255, region.mean((0, 1))
        whole = sample(plain.dataset("train"), k)[0].mean((1, 2)).numpy() * 255
        np.testing.assert_allclose(cropped, box_mean, atol=3)
        np.testing.assert_allclose(cropped, class_color(int(dataset.targets[k]), 3), atol=5)
        assert np.abs(whole - box_mean).max() > 40  # without the crop, the grey background shows


def test_cub_boxes_only_needed_to_crop(cub: Path) -> None:
    (cub / "bounding_boxes.txt").unlink()
    assert len(CUBDataModule(cub).dataset("train")) == 9
    with pytest.raises(FileNotFoundError, match=r"bounding_boxes\.txt does not exist.*crop_to_bbox=False"):
        CUBDataModule(cub, crop_to_bbox=True).dataset("train")


def _lines(name: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], object]:
    def apply(folder: Path) -> None:
        path = folder / name
        path.write_text("".join(f"{line}\n" for line in edit(path.read_text().splitlines())))

    return apply


def _replace(index: int, line: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [*lines[:index], line, *lines[index + 1 :]]


CUB_ERRORS: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("no CUB", lambda f: shutil.rmtree(f), FileNotFoundError, r"images\.txt does not exist.*CUB_200_2011\.tgz"),
    (
        "no labels file",
        lambda f: (f / "image_class_labels.txt").unlink(),
        FileNotFoundError,
        r"image_class_labels\.txt does not exist; download CUB_200_2011\.tgz",
    ),
    (
        "no image",
        lambda f: next((f / "images").glob("003.*/*_0001_*.jpg")).unlink(),  # a test image
        FileNotFoundError,
        r"1 CUB images are missing: .*003\.Sooty_Albatross/",
    ),
    (
        "columns",
        _lines("images.txt", _replace(1, "2")),
        ValueError,
        r"images\.txt, line 2: expected 2 columns, '<image id> <path>', got '2'",
    ),
    (
        "extra column",
        _lines("image_class_labels.txt", _replace(2, "3 1 1")),
        ValueError,
        r"image_class_labels\.txt, line 3: expected 2 columns",
    ),
    (
        "id not integer",
        _lines("image_class_labels.txt", _replace(0, "x 1")),
        ValueError,
        r"image_class_labels\.txt, line 1: image id 'x' is not an integer",
    ),
    (
        "class not integer",
        _lines("classes.txt", _replace(1, "2.5 002.Laysan_Albatross")),
        ValueError,
        r"classes\.txt, line 2: class id '2\.5' is not an integer",
    ),
    (
        "box not a number",
        _lines("bounding_boxes.txt", _replace(2, "3 1.0 2.0 abc 4.0")),
        ValueError,
        r"bounding_boxes\.txt, line 3: width 'abc' is not a number",
    ),
    (
        "id missing",
        _lines("train_test_split.txt", lambda lines: lines[:-1]),
        ValueError,
        r"train_test_split\.txt lacks 1 image id\(s\) of images\.txt: 15 \(images\.txt line 15\)",
    ),
    (
        "box missing",
        _lines("bounding_boxes.txt", lambda lines: lines[1:]),
        ValueError,
        r"bounding_boxes\.txt lacks 1 image id\(s\) of images\.txt: 1 \(images\.txt line 1\)",
    ),
    (
        "unknown id",
        _lines("image_class_labels.txt", lambda lines: [*lines, "16 1"]),
        ValueError,
        r"image_class_labels\.txt, line 16: image id 16 is not in images\.txt",
    ),
    (
        "unknown class",
        _lines("image_class_labels.txt", _replace(1, "2 7")),
        ValueError,
        r"image_class_labels\.txt, line 2: class id 7 is not a class id of classes\.txt",
    ),
    (
        "split flag",
        _lines("train_test_split.txt", _replace(3, "4 2")),
        ValueError,
        r"train_test_split\.txt, line 4: is_training_image 2 is not 1 \(train\) or 0 \(test\)",
    ),
    (
        "duplicate image",
        _lines("images.txt", lambda lines: [*lines, "1 001.Black_footed_Albatross/copy.jpg"]),
        ValueError,
        r"images\.txt, line 16: image id 1 repeats line 1",
    ),
    (
        "duplicate class",
        _lines("classes.txt", _replace(1, "1 002.Laysan_Albatross")),
        ValueError,
        r"classes\.txt, line 2: class id 1 repeats line 1",
    ),
    ("no classes", _lines("classes.txt", lambda lines: []), ValueError, r"classes\.txt lists no classes"),
    (
        "empty box",
        _lines("bounding_boxes.txt", _replace(4, "5 1.0 2.0 0.0 4.0")),
        ValueError,
        r"bounding_boxes\.txt, line 5: box width 0\.0 and height 4\.0 must be positive",
    ),
]


@pytest.mark.parametrize(("edit", "error", "match"), [case[1:] for case in CUB_ERRORS], ids=[c[0] for c in CUB_ERRORS])
def test_cub_errors(cub: Path, edit: Callable[[Path], object], error: type[Exception], match: str) -> None:
    edit(cub)
    with pytest.raises(error, match=match):
        CUBDataModule(cub, crop_to_bbox=True).dataset("test")


# ------------------------------------------------------------------------------------------------ both


@pytest.fixture(params=["dogs", "cub"])
def module(request: pytest.FixtureRequest, tmp_path: Path) -> ClassificationDataModule:
    if request.param == "dogs":
        return StanfordDogsDataModule(write_stanford_dogs(tmp_path / "dogs"), **LOADER)
    return CUBDataModule(write_cub(tmp_path / "cub"), crop_to_bbox=True, **LOADER)


def test_batches(module: ClassificationDataModule) -> None:
    module.setup("fit")
    for loader, size in ((module.train_dataloader(), 9), (module.val_dataloader(), 6)):
        images, targets = next(iter(loader))
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        assert targets["labels"].dtype == torch.int64 and targets["labels"].shape == (4,)
        assert len(targets["file_name"]) == 4 and targets["index"].shape == (4,)
        assert sum(len(batch[0]) for batch in loader) == size
    assert module.evaluator("val").num_classes == 3  # type: ignore[union-attr]


def test_unreadable_image_is_skipped(module: ClassificationDataModule) -> None:
    dataset = module.dataset("test")
    dataset.paths[0].write_bytes(b"not a jpeg")
    assert dataset[0] is None and dataset.skipped == 1
    assert sum(len(images) for images, _ in module.test_dataloader()) == 5
    assert dataset.skipped == 2


def test_predict_images(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for k in range(3):
        Image.new("RGB", (40, 30), (40 * k, 0, 0)).save(folder / f"{k}.png")
    dm = StanfordDogsDataModule(write_stanford_dogs(tmp_path / "dogs"), predict_images=folder, **LOADER)
    images, targets = next(iter(dm.predict_dataloader()))
    assert images.shape == (3, 3, 32, 32) and "labels" not in targets
    assert targets["file_name"] == ["0.png", "1.png", "2.png"]
    assert dm.dataset("test").targets is not None and len(dm.dataset("test")) == 6
