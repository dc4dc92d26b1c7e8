"""Tiny datasets in the official layouts of Stanford Dogs and CUB-200-2011, for tests (``from official_layouts
import write_stanford_dogs, write_cub``).

The files are written exactly as the official downloads have them (``lists.tar``'s MATLAB lists, CUB's
space-separated text files); the images are small JPEGs, deterministic for given arguments. Each class has
its own colour, so a model can learn the classes: Stanford Dogs images are that colour with a little noise,
CUB images a grey background with a rectangle (the "bird") of the class colour, whose box is written to
``bounding_boxes.txt``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

BACKGROUND = (128, 128, 128)  # CUB images: the grey around the box


def class_color(label: int, num_classes: int) -> tuple[int, int, int]:
    """A saturated colour per class, hues spread evenly (never grey)."""
    r, g, b = colorsys.hsv_to_rgb(label / num_classes, 0.9, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95, subsampling=0)  # 4:4:4: sharp colour edges


def _noisy(rng: np.random.Generator, height: int, width: int, color: Sequence[int]) -> np.ndarray:
    noise = rng.integers(-12, 13, size=(height, width, 3))
    return np.clip(np.asarray(color) + noise, 0, 255).astype(np.uint8)


def _cells(strings: Sequence[str]) -> np.ndarray:
    """An N x 1 object array of strings, which ``savemat`` writes as a MATLAB cell array."""
    cells = np.empty((len(strings), 1), dtype=object)
    for k, text in enumerate(strings):
        cells[k, 0] = text
    return cells


def write_stanford_dogs(
    root: Path | str,
    breeds: Sequence[str] = ("Chihuahua", "Maltese_dog", "beagle"),
    per_class: tuple[int, int] = (3, 2),
    size: int = 48,
) -> Path:
    """Stanford Dogs as ``images.tar`` and ``lists.tar`` unpack into ``root``: ``root/Images/<wnid>-<breed>/
    <wnid>_<n>.jpg`` and ``root/lists/{train,test,file}_list.mat``.

    Breed ``k`` (label ``k + 1`` in the lists) gets the folder ``n{2085620 + 100 k:08d}-<breed>``,
    ``per_class[0]`` training and ``per_class[1]`` test images of ``size`` x ``size * 5 // 4`` pixels.
    The lists hold ``file_list`` (N x 1 cell array of paths under ``Images/``), ``annotation_list`` (the same
    without ``.jpg``) and ``labels`` (N x 1 double), grouped by label as in the official files.

    Returns:
        ``root``, the folder to pass to ``StanfordDogsDataModule``.
    """
    root = Path(root)
    rng = np.random.default_rng(0)
    lists: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label, breed in enumerate(breeds):
        wnid = f"n{2085620 + 100 * label:08d}"
        color = class_color(label, len(breeds))
        number = 1000
        for split, count in zip(("train", "test"), per_class, strict=True):
            for _ in range(count):
                number += int(rng.integers(1, 50))
                file = f"{wnid}-{breed}/{wnid}_{number}.jpg"
                _save_jpeg(root / "Images" / file, _noisy(rng, size, size * 5 // 4, color))
                lists[split][0].append(file)
                lists[split][1].append(label + 1)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    every = ([*lists["train"][0], *lists["test"][0]], [*lists["train"][1], *lists["test"][1]])
    for name, (files, labels) in {**lists, "file": every}.items():
        mat = {
            "file_list": _cells(files),
            "annotation_list": _cells([file.removesuffix(".jpg") for file in files]),
            "labels": np.asarray(labels, dtype=np.float64).reshape(-1, 1),
        }
        scipy.io.savemat(root / "lists" / f"{name}_list.mat", mat)
    return root


def write_cub(
    root: Path | str,
    classes: Sequence[str] = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"),
    per_class: tuple[int, int] = (3, 2),
    size: int = 48,
) -> Path:
    """CUB-200-2011 as ``CUB_200_2011.tgz`` unpacks into ``root``: ``root/CUB_200_2011/`` with ``images/``,
    ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt`` and
    ``bounding_boxes.txt``.

    Class ``k`` (class id ``k + 1``) gets the folder ``{k + 1:03d}.<name>`` and ``per_class[0]`` training and
    ``per_class[1]`` test images, ``size`` x ``size * 5 // 4`` pixels: grey with a rectangle of the class colour
    (:func:`class_color`) covering 30 to 60% of each side at a random place; ``bounding_boxes.txt`` has that
    rectangle (``<x> <y> <width> <height>``, floats). Image ids run from 1 in class order, train and test images
    interleaved (the first of each class is a test image), as in the official files where the split is random.

    Returns:
        ``root / "CUB_200_2011"``.
    """
    folder = Path(root) / "CUB_200_2011"
    rng = np.random.default_rng(0)
    height, width = size, size * 5 // 4
    images: list[str] = []
    labels: list[str] = []
    split: list[str] = []
    boxes: list[str] = []
    for label, name in enumerate(classes):
        class_folder = f"{label + 1:03d}.{name}"
        color = class_color(label, len(classes))
        flags = [0] + [1] * per_class[0] + [0] * (per_class[1] - 1) if per_class[1] else [1] * per_class[0]
        for k, is_train in enumerate(flags):
            image_id = len(images) + 1
            file = f"{class_folder}/{name}_{k + 1:04d}_{image_id}.jpg"
            box_w, box_h = (int(rng.integers(3 * n // 10, 6 * n // 10 + 1)) for n in (width, height))
            x, y = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
            image = _noisy(rng, height, width, BACKGROUND)
            image[y : y + box_h, x : x + box_w] = _noisy(rng, box_h, box_w, color)
            _save_jpeg(folder / "images" / file, image)
            images.append(f"{image_id} {file}")
            labels.append(f"{image_id} {label + 1}")
            split.append(f"{image_id} {is_train}")
            boxes.append(f"{image_id} {float(x)} {float(y)} {float(box_w)} {float(box_h)}")
    class_lines = [f"{k + 1} {k + 1:03d}.{name}" for k, name in enumerate(classes)]
    files = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "classes.txt": class_lines,
        "bounding_boxes.txt": boxes,
    }
    for name, lines in files.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines))
    return folder
