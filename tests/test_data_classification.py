"""The classification data base: ImageFolderDataModule's layout rules, the crops, the batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobiletasks.data import ImageFolderDataModule
from mobiletasks.data.classification.base import ClassificationDataset
from mobiletasks.data.collate import classification_collate
from mobiletasks.data.transforms import classification_eval_transform, classification_train_transform

COLORS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "owl": (30, 30, 200)}


def write_folder(root: Path, layout: dict[str, dict[str, int]], size: tuple[int, int] = (40, 60)) -> Path:
    """``layout[split][class]`` images of the class colour."""
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", size[::-1], COLORS[name]).save(folder / f"{i}.png")
    return root


def test_image_folder_labels_and_batches(tmp_path: Path) -> None:
    root = write_folder(tmp_path, {"train": {"cat": 2, "dog": 3, "owl": 1}, "val": {"dog": 2, "cat": 1}})
    dm = ImageFolderDataModule(root, image_size=32, batch_size=4, num_workers=0)
    assert dm.class_names == ["cat", "dog", "owl"] and dm.num_classes == 3
    val = dm.dataset("val")  # a class missing from val is fine
    assert [int(t) for t in val.targets] == [0, 1, 1] and val.file_names[0] == "cat/0.png"
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    # each image is its class colour: the labels agree with the pixels
    colors = torch.tensor([COLORS[dm.class_names[int(label)]] for label in targets["labels"]]) / 255
    assert torch.allclose(images.mean(dim=(2, 3)), colors, atol=0.01)
    assert dm.dataset("test") is not val and len(dm.dataset("test")) == 3  # no test folder: the val split
    assert type(dm.evaluator("val")).__name__ == "ClassificationEvaluator"


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train folder .*train does not exist"):
        _ = ImageFolderDataModule(tmp_path / "none").class_names
    root = write_folder(tmp_path / "a", {"train": {"cat": 1}, "val": {"owl": 1}})
    with pytest.raises(ValueError, match=r"val folder .* has class folders the train folder lacks: owl"):
        ImageFolderDataModule(root).dataset("val")
    root = write_folder(tmp_path / "b", {"train": {"cat": 1}, "val": {"cat": 1}})
    (root / "train" / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train/dog holds no images"):
        ImageFolderDataModule(root).dataset("train")
    (tmp_path / "c" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no class folders"):
        _ = ImageFolderDataModule(tmp_path / "c").class_names


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    root = write_folder(tmp_path, {"train": {"cat": 2, "dog": 1}, "val": {"cat": 1}})
    (root / "train" / "cat" / "1.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(root, image_size=16, batch_size=8, num_workers=0)
    images, targets = next(iter(dm.train_dataloader()))  # training: the next readable image takes its place
    assert len(images) == 3 and dm.dataset("train").skipped == 1
    assert sorted(targets["file_name"]) == ["cat/0.png", "dog/0.png", "dog/0.png"]
    images, targets = next(iter(dm.val_dataloader()))
    assert len(images) == 1 and dm.dataset("val").skipped == 0


def test_eval_transform_resizes_then_center_crops() -> None:
    # 100 x 200: resized to 73 x 146 (shorter side 64 / 0.875), center crop 64: the red ends are cut away
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :40] = (255, 0, 0)
    image[:, -40:] = (255, 0, 0)
    out = classification_eval_transform(64)(image)
    assert out.shape == (3, 64, 64) and float(out[0].max()) == 0.0
    train = classification_train_transform(32, scale=(1.0, 1.0), hflip=False)
    assert train(image).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="crop scale must be"):
        classification_train_transform(32, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="image_size must be a positive number"):
        classification_eval_transform(0)


def test_boxes_crop_before_the_transform_and_collate_drops_skipped(tmp_path: Path) -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 20:40] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "a.png")
    identity = classification_train_transform(8, scale=(1.0, 1.0), hflip=False, augment=False)
    dataset = ClassificationDataset(
        [tmp_path / "a.png"], np.array([2]), ["x", "y", "z"], transform=identity, boxes=np.array([[20, 10, 40, 20.0]])
    )
    sample = dataset[0]
    assert sample is not None and torch.allclose(sample[0][2], torch.ones(8, 8), atol=0.02)  # all blue
    images, targets = classification_collate([sample, None])
    assert images.shape == (1, 3, 8, 8) and targets["labels"].tolist() == [2]
    unlabelled = (sample[0], {"file_name": "b.png", "index": 1})
    assert "labels" not in classification_collate([sample, unlabelled])[1]
    empty, targets = classification_collate([None])
    assert empty.shape == (0, 3, 0, 0) and targets["file_name"] == []
