"""CelebA attributes: the official text formats (checked against torchvision's reader), the data module's splits,
batches and attribute subsets, and an error naming the file and the line for every malformed input."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from celeba_layout import CELEBA_ATTRIBUTES, write_celeba
from torchvision.datasets import CelebA

from mobiletasks.data.classification.base import ClassificationDataset
from mobiletasks.data.classification.celeba import (
    CelebADataModule,
    read_attribute_names,
    read_attributes,
    read_partition,
)

ATTR, PARTITION = "list_attr_celeba.txt", "list_eval_partition.txt"


@pytest.fixture(scope="module")
def celeba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba"), seed=3)


def torchvision_csv(root: Path, name: str, header: int | None = None) -> Any:
    """torchvision's own reader of the CelebA text files (``root/celeba/<name>``)."""
    return CelebA._load_csv(SimpleNamespace(root=str(root.parent), base_folder=root.name), name, header)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def edited(tmp_path: Path, name: str, edit: Any, **kwargs: Any) -> Path:
    """A fixture whose text file ``name`` is ``edit(lines)`` (lines without their newlines)."""
    root = write_celeba(tmp_path, num_images=6, partition=(2, 2, 2), **kwargs)
    path = root / name
    path.write_text("".join(line + "\n" for line in edit(lines_of(path))))
    return path


def test_fixture_has_the_official_format(celeba: Path) -> None:
    lines = lines_of(celeba / ATTR)
    assert lines[0] == "12"
    assert lines[1] == " ".join(CELEBA_ATTRIBUTES) + " "  # the official header ends with a space
    assert all(re.fullmatch(r"\d{6}\.jpg( -1|  1){40}", row) for row in lines[2:]), lines[2]
    codes = [0] * 8 + [1, 1, 2, 2]
    assert lines_of(celeba / PARTITION) == [f"{i + 1:06d}.jpg {code}" for i, code in enumerate(codes)]
    assert sorted(p.name for p in (celeba / "img_align_celeba").iterdir()) == [f"{i:06d}.jpg" for i in range(1, 13)]


def test_read_attributes_agrees_with_torchvision(celeba: Path) -> None:
    names, files, values = read_attributes(celeba / ATTR)
    reference = torchvision_csv(celeba, ATTR, header=1)
    assert names == list(CELEBA_ATTRIBUTES) == [h for h in reference.header if h]  # torchvision keeps a '' name
    assert files == reference.index == [f"{i:06d}.jpg" for i in range(1, 13)]
    assert values.dtype == np.int8 and values.shape == (12, 40)
    np.testing.assert_array_equal(values, reference.data.numpy())
    assert set(np.unique(values)) == {-1, 1}
    assert read_attribute_names(celeba / ATTR) == names


def test_values_depend_on_the_seed(tmp_path: Path) -> None:
    a = read_attributes(write_celeba(tmp_path / "a", seed=0) / ATTR)[2]
    b = read_attributes(write_celeba(tmp_path / "b", seed=1) / ATTR)[2]
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, read_attributes(write_celeba(tmp_path / "c", seed=0) / ATTR)[2])


def test_read_partition_agrees_with_torchvision(celeba: Path) -> None:
    partition = read_partition(celeba / PARTITION)
    reference = torchvision_csv(celeba, PARTITION)
    assert list(partition) == reference.index
    assert list(partition.values()) == reference.data[:, 0].tolist() == [0] * 8 + [1, 1, 2, 2]


@pytest.mark.parametrize(
    "text",
    [
        "2\r\nA B \r\n1.jpg -1  1\r\n2.jpg  1 -1\r\n",  # Windows line ends
        "2\nA B\n1.jpg\t-1 1\n2.jpg    1   -1",  # tabs, any spaces, no trailing space or newline
        "2\nA B \n1.jpg -1  1\n2.jpg  1 -1\n\n\n",  # trailing blank lines
    ],
)
def test_read_attributes_tolerates_whitespace(tmp_path: Path, text: str) -> None:
    (tmp_path / ATTR).write_bytes(text.encode())
    names, files, values = read_attributes(tmp_path / ATTR)
    assert (names, files, values.tolist()) == (["A", "B"], ["1.jpg", "2.jpg"], [[-1, 1], [1, -1]])


def _set(row: int, column: int, value: str) -> Any:
    def edit(lines: list[str]) -> list[str]:
        tokens = lines[row - 1].split()
        tokens[column] = value
        lines[row - 1] = " ".join(tokens)
        return lines

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda lines: ["", *lines[1:]], r"line 1: expected the number of images, got ''"),
        (lambda lines: ["six", *lines[1:]], r"line 1: expected the number of images, got 'six'"),
        (lambda lines: [",".join(lines[1].split())], r"line 1: .*Kaggle's CSV"),
        (lambda lines: ["7", *lines[1:]], r"line 1: says 7 images but the file lists 6"),
        (lambda lines: lines[:-1], r"line 1: says 6 images but the file lists 5"),
        (lambda lines: [lines[0], " ", *lines[2:]], r"line 2: expected the attribute names, got an empty line"),
        (lambda lines: [lines[0], "Male Young Male", *lines[2:]], r"line 2: attribute names repeat: Male"),
        (lambda lines: [*lines[:4], lines[4][:-3], *lines[5:]], r"line 5: expected 41 columns .*, got 40"),
        (lambda lines: [*lines[:5], lines[5] + "  1", *lines[6:]], r"line 6: expected 41 columns .*, got 42"),
        (lambda lines: [*lines[:3], "", *lines[3:]], r"line 4: expected 41 columns .*, got 0"),
        (_set(4, 5, "0"), r"line 4: value '0' for attribute Bald of 000002.jpg; values must be -1 or 1"),
        (_set(8, 40, "1.0"), r"line 8: value '1.0' for attribute Young of 000006.jpg"),
        (_set(3, 1, "+1"), r"line 3: value '\+1' for attribute 5_o_Clock_Shadow"),
        (_set(7, 0, "000003.jpg"), r"line 7: image 000003.jpg is listed again \(first on line 5\)"),
    ],
)
def test_bad_attribute_file(tmp_path: Path, edit: Any, match: str) -> None:
    path = edited(tmp_path, ATTR, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + match + ".*Anno/"):
        read_attributes(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda lines: [*lines[:2], lines[2] + " 1", *lines[3:]], r"line 3: expected 2 columns .*, got 3"),
        (lambda lines: [*lines[:1], "000002.jpg", *lines[2:]], r"line 2: expected 2 columns .*, got 1"),
        (_set(4, 1, "3"), r"line 4: partition '3' of 000004.jpg must be 0 \(train\), 1 \(val\) or 2 \(test\)"),
        (_set(1, 1, "train"), r"line 1: partition 'train' of 000001.jpg"),
        (_set(6, 0, "000001.jpg"), r"line 6: image 000001.jpg is listed again \(first on line 1\)"),
    ],
)
def test_bad_partition_file(tmp_path: Path, edit: Any, match: str) -> None:
    path = edited(tmp_path, PARTITION, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + match + ".*Eval/"):
        read_partition(path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"list_attr_celeba.txt does not exist; download it from the CelebA Anno/"
    ):
        read_attributes(tmp_path / ATTR)
    with pytest.raises(
        FileNotFoundError, match=r"list_eval_partition.txt does not exist; download it from the CelebA Eval/"
    ):
        read_partition(tmp_path / PARTITION)
    with pytest.raises(FileNotFoundError, match=r"nor .*celeba/list_attr_celeba.txt\); download .* Anno/"):
        _ = CelebADataModule(tmp_path).class_names


def module(root: Path, **kwargs: Any) -> CelebADataModule:
    return CelebADataModule(root, image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_splits(celeba: Path) -> None:
    dm = module(celeba)
    assert dm.multi_label and dm.class_names == list(CELEBA_ATTRIBUTES) and dm.num_classes == 40
    sizes = {split: len(dm.dataset(split)) for split in ("train", "val", "test", "predict")}
    assert sizes == {"train": 8, "val": 2, "test": 2, "predict": 2}
    assert dm.dataset("val").file_names == ["000009.jpg", "000010.jpg"]
    assert dm.dataset("predict").file_names == dm.dataset("val").file_names
    assert dm.dataset("test").file_names == ["000011.jpg", "000012.jpg"]


def test_batches(celeba: Path) -> None:
    dm = module(celeba)
    dm.setup("fit")
    _, files, values = read_attributes(celeba / ATTR)
    expected = dict(zip(files, (values == 1).astype(np.float32), strict=True))
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        images, targets = next(iter(loader))
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
        assert images.min() >= 0 and images.max() <= 1
        labels = targets["labels"]
        assert labels.dtype == torch.float32 and labels.shape == (len(images), 40)
        assert set(labels.unique().tolist()) <= {0.0, 1.0}
        for name, row in zip(targets["file_name"], labels.numpy(), strict=True):
            np.testing.assert_array_equal(row, expected[name])


def test_attribute_subset(celeba: Path) -> None:
    dm = module(celeba, attributes=["Smiling", "Male"])
    assert dm.class_names == ["Smiling", "Male"] and dm.num_classes == 2
    values = read_attributes(celeba / ATTR)[2]
    dataset = dm.dataset("train")
    assert dataset.targets is not None and dataset.targets.shape == (8, 2)
    columns = [CELEBA_ATTRIBUTES.index("Smiling"), CELEBA_ATTRIBUTES.index("Male")]
    np.testing.assert_array_equal(dataset.targets, values[:8][:, columns] == 1)
    assert module(celeba, attributes="Young").class_names == ["Young"]


def test_bad_attribute_subset(celeba: Path) -> None:
    with pytest.raises(ValueError, match=r"attributes \['Smilling'\] are not in .*list_attr_celeba.txt; known: 5_o"):
        _ = module(celeba, attributes=["Smilling", "Male"]).class_names
    for attributes in ([], ["Male", "Male"]):
        with pytest.raises(ValueError, match="attributes must be distinct attribute names, at least one"):
            module(celeba, attributes=attributes)


def test_torchvision_layout(tmp_path: Path) -> None:
    write_celeba(tmp_path / "celeba", num_images=3, partition=(1, 1, 1))
    dm = module(tmp_path)
    assert dm.folder == tmp_path / "celeba" and len(dm.dataset("train")) == 1


def test_class_names_read_only_the_header(tmp_path: Path) -> None:
    path = edited(tmp_path, ATTR, _set(3, 1, "bad"))
    assert module(path.parent).class_names == list(CELEBA_ATTRIBUTES)
    with pytest.raises(ValueError, match="line 3: value 'bad'"):
        module(path.parent).dataset("train")


@pytest.mark.parametrize(
    ("name", "edit", "match"),
    [
        (
            PARTITION,
            lambda lines: lines[:-1],
            r"unknown image 000006.jpg \(.*list_attr_celeba.txt, line 8\) is not in .*list_eval_partition.txt",
        ),
        (
            ATTR,
            lambda lines: ["5", *lines[1:-1]],
            r"unknown image 000006.jpg \(.*list_eval_partition.txt, line 6\) is not in .*list_attr_celeba.txt",
        ),
    ],
)
def test_unknown_image(tmp_path: Path, name: str, edit: Any, match: str) -> None:
    path = edited(tmp_path, name, edit)
    with pytest.raises(ValueError, match=match + "; the two files must list the same images"):
        module(path.parent).dataset("val")


def test_missing_images(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, num_images=3, partition=(1, 1, 1))
    (root / "img_align_celeba" / "000002.jpg").unlink()
    dm = module(root)
    assert len(dm.dataset("train")) == 1  # only the split's images are checked
    with pytest.raises(
        FileNotFoundError,
        match=r"1 CelebA val images are missing: .*000002\.jpg \(looked for 000002\.jpg in .*img_align_celeba, "
        r"which holds 2 files \(000001\.jpg, 000003\.jpg\)\); download img_align",
    ):
        dm.dataset("val")


def test_empty_split(tmp_path: Path) -> None:
    dm = module(write_celeba(tmp_path, num_images=4, partition=(3, 1, 0)))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt puts no image in the test split \(partition 2\)"):
        dm.dataset("test")


def test_unreadable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, num_images=4, partition=(2, 2, 0))
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg")
    dm = module(root)
    images, targets = next(iter(dm.val_dataloader()))
    assert targets["file_name"] == ["000004.jpg"] and images.shape == (1, 3, 32, 32)
    dataset = dm.dataset("val")
    assert isinstance(dataset, ClassificationDataset) and dataset.skipped == 1


def test_predict_images(celeba: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        (folder / name).write_bytes((celeba / "img_align_celeba" / name).read_bytes())
    dm = module(celeba, predict_images=folder)
    images, targets = next(iter(dm.predict_dataloader()))
    assert images.shape == (3, 3, 32, 32) and "labels" not in targets
    assert targets["file_name"] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert dm.dataset("predict").class_names == list(CELEBA_ATTRIBUTES)
