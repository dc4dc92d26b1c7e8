"""Fine-grained classification from the official files: Stanford Dogs (120 breeds) and CUB-200-2011 (200 birds).

Stanford Dogs (http://vision.stanford.edu/aditya86/ImageNetDogs/): ``images.tar`` unpacks to
``Images/<wnid>-<Breed>/<wnid>_<n>.jpg`` and ``lists.tar`` to ``train_list.mat``, ``test_list.mat`` (and
``file_list.mat``), read from ``root/lists/`` or from ``root`` itself. Each list is a MATLAB file holding
``file_list`` (an N x 1 cell array of paths under ``Images/``: ``'n02085620-Chihuahua/n02085620_5927.jpg'``),
``annotation_list`` (the same without ``.jpg``) and ``labels`` (N x 1 double, 1..120). 12,000 train and 8,580
test images; the class names are the breed part of the folder names (``Chihuahua``), in label order.

CUB-200-2011 (https://www.vision.caltech.edu/datasets/cub_200_2011/): ``CUB_200_2011.tgz`` unpacks to
``CUB_200_2011/`` with ``images/<NNN.Name>/<file>.jpg`` and space-separated text files, one line per image or
class, ids from 1: ``images.txt`` (``<image id> <path under images/>``), ``image_class_labels.txt``
(``<image id> <class id>``), ``train_test_split.txt`` (``<image id> <1: train, 0: test>``), ``classes.txt``
(``<class id> <NNN.Name>``) and ``bounding_boxes.txt`` (``<image id> <x> <y> <width> <height>``, pixels).
5,994 train and 5,794 test images; the class names are the ``Name`` parts (``Black_footed_Albatross``).

Both datasets have a train and a test split only, and results are reported on the test split (the MobileNet
paper, section 4.3, Table 10), so "val" reads the test split, as does "predict" unless ``predict_images`` is set.
Nothing is read when a data module is built; ``class_names`` reads one small list file on first use.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from mobiletasks.common import PathLike
from mobiletasks.data.classification.base import ClassificationDataModule, ClassificationDataset
from mobiletasks.data.files import find_files, read_text

__all__ = ["CUBDataModule", "StanfordDogsDataModule", "read_dogs_list"]

DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
_SHOW = 5  # ids listed in an error


def read_dogs_list(path: PathLike) -> tuple[list[str], np.ndarray]:
    """The ``file_list`` and the 0-based ``labels`` (int64 [N]) of a Stanford Dogs list (``train_list.mat``).

    Raises:
        ValueError: the file is not a MATLAB file, lacks ``file_list`` or ``labels``, or a label is not a
            whole number from 1.
    """
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises MatReadError, ValueError, TypeError, zlib.error, ... on a corrupt file
        raise ValueError(
            f"Stanford Dogs list {path} is not a readable MATLAB file ({type(err).__name__}: {err}); download "
            f"lists.tar again from {DOGS_URL}"
        ) from err
    if "file_list" not in mat or "labels" not in mat:
        raise ValueError(
            f"Stanford Dogs list {path} lacks the variable file_list or labels (it has "
            f"{', '.join(k for k in mat if not k.startswith('__')) or 'none'}); use the lists of lists.tar"
        )
    try:  # a cell array: each cell holds a 1-element string array
        files = [str(np.asarray(cell).item()) for cell in np.asarray(mat["file_list"]).ravel()]
        labels = np.asarray(mat["labels"], dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise ValueError(f"Stanford Dogs list {path}: file_list must be a cell array of paths ({err})") from None
    if len(files) != len(labels):
        raise ValueError(f"Stanford Dogs list {path} has {len(files)} files but {len(labels)} labels")
    bad = np.flatnonzero((labels < 1) | (labels != np.round(labels)))
    if len(bad):
        raise ValueError(f"Stanford Dogs list {path}: labels must be 1, 2, ..., got {labels[bad[0]]} (entry {bad[0]})")
    return files, labels.astype(np.int64) - 1


class StanfordDogsDataModule(ClassificationDataModule):
    """Stanford Dogs, 120 dog breeds, from ``Images/`` and the official ``train_list.mat``/``test_list.mat``.

    Label ``k`` is the ``labels`` value ``k + 1`` of the lists; its name is the breed part of the folder its
    files are in (``n02085620-Chihuahua`` -> ``Chihuahua``). ``file_name`` of a sample is its path under
    ``Images/``, as in ``file_list``.

    Args:
        root: the folder holding ``Images/`` and ``lists/`` (or the ``.mat`` lists directly).
        other arguments: see :class:`~mobiletasks.data.classification.base.ClassificationDataModule`.

    Raises:
        FileNotFoundError: a list, ``Images/`` or listed images are missing (when first needed).
        ValueError: a list is corrupt, or its labels and folders disagree (the message names the file).

    Example:
        >>> dm = StanfordDogsDataModule("data/StanfordDogs")  # nothing is read yet
        >>> dm.split_files["val"]
        'test_list.mat'
    """

    split_files = {"train": "train_list.mat"} | dict.fromkeys(("val", "test", "predict"), "test_list.mat")

    def __init__(
        self,
        root: PathLike,
        image_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        crop_fraction: float = 0.875,
        predict_images: PathLike | None = None,
    ) -> None:
        loader = (image_size, batch_size, eval_batch_size, num_workers)
        super().__init__(*loader, augment, crop_scale, hflip, crop_fraction, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        self._lists: dict[str, tuple[list[str], np.ndarray]] = {}
        self._folders: list[str] | None = None  # the image folder of each label

    @property
    def class_names(self) -> list[str]:
        return [folder.partition("-")[2] or folder for folder in self._train_folders()]

    def list_path(self, name: str) -> Path:
        """``root/lists/<name>``, or ``root/<name>`` (where ``lists.tar`` puts it when unpacked into root)."""
        for path in (self.root / "lists" / name, self.root / name):
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"Stanford Dogs list {self.root / 'lists' / name} does not exist (nor {self.root / name}); download "
            f"lists.tar from {DOGS_URL} and unpack it into {self.root / 'lists'} (root must hold Images/ and lists/)"
        )

    def _read(self, name: str) -> tuple[list[str], np.ndarray]:
        if name not in self._lists:  # cached: class_names reads train_list.mat once, at start-up
            self._lists[name] = read_dogs_list(self.list_path(name))
        return self._lists[name]

    def _label_folders(self, name: str) -> dict[int, str]:
        """The folder of each label in list ``name``; every file of a label must be in that one folder."""
        folders: dict[int, str] = {}
        for file, label in zip(*self._read(name), strict=True):
            folder, slash, _ = file.partition("/")
            if not slash:
                raise ValueError(
                    f"Stanford Dogs list {self.list_path(name)}: file {file!r} is not '<wnid>-<breed>/<image>.jpg'"
                )
            if folders.setdefault(int(label), folder) != folder:
                raise ValueError(
                    f"Stanford Dogs list {self.list_path(name)}: label {label + 1} is given to files in two folders, "
                    f"{folders[int(label)]} and {folder}; each label must be one breed folder"
                )
        return folders

    def _train_folders(self) -> list[str]:
        """The breed folder of each label 0, 1, ..., from ``train_list.mat``."""
        if self._folders is None:
            path, folders = self.list_path("train_list.mat"), self._label_folders("train_list.mat")
            absent = sorted(set(range(len(folders))) - set(folders))
            if absent or not folders:
                raise ValueError(
                    f"Stanford Dogs list {path}: labels must be 1..K, but no file has label {(absent or [0])[0] + 1}"
                )
            ordered = [folders[k] for k in range(len(folders))]
            shared = sorted({folder for folder in ordered if ordered.count(folder) > 1})
            if shared:
                raise ValueError(f"Stanford Dogs list {path}: folder {shared[0]} has two labels; a breed has one")
            self._folders = ordered
        return self._folders

    def make_dataset(self, split: str) -> ClassificationDataset:
        name = self.split_files[split]
        files, labels = self._read(name)
        train = self._train_folders()
        for label, folder in self._label_folders(name).items():  # the labels must mean the breeds of training
            if label >= len(train) or folder != train[label]:
                found = f"is {train[label]}" if label < len(train) else f"does not exist ({len(train)} labels)"
                raise ValueError(
                    f"Stanford Dogs list {self.list_path(name)}: label {label + 1} is folder {folder}, but in "
                    f"train_list.mat it {found}; use the lists of one lists.tar"
                )
        images = self.root / "Images"
        if not images.is_dir():
            raise FileNotFoundError(
                f"Stanford Dogs image folder {images} does not exist; download Images/ (images.tar) from the Stanford "
                f"Dogs page, {DOGS_URL}, and unpack it into {self.root}"
            )
        paths = [images / file for file in files]
        paths = find_files(paths, "Stanford Dogs images", f"download Images/ (images.tar) from {DOGS_URL}")
        return ClassificationDataset(paths, labels, self.class_names, images, self.split_transform(split))


# (column name, type) of each CUB file; the first column is the id the rows are keyed by
_CUB_COLUMNS: dict[str, tuple[tuple[str, type], ...]] = {
    "images.txt": (("image id", int), ("path", str)),
    "image_class_labels.txt": (("image id", int), ("class id", int)),
    "train_test_split.txt": (("image id", int), ("is_training_image", int)),
    "classes.txt": (("class id", int), ("class name", str)),
    "bounding_boxes.txt": (("image id", int), ("x", float), ("y", float), ("width", float), ("height", float)),
}


def read_cub_file(path: PathLike) -> dict[int, tuple[int, tuple[Any, ...]]]:
    """The rows of a CUB text file by id: ``{id: (line number, (other columns, ...))}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not UTF-8 text, or a line has the wrong number of columns, a non-numeric (or
            non-finite) value or an id seen before (the message names the file and the line).
    """
    path = Path(path)
    columns = _CUB_COLUMNS[path.name]
    if not path.is_file():
        alternative = " (or set crop_to_bbox=False)" if path.name == "bounding_boxes.txt" else ""
        raise FileNotFoundError(
            f"CUB file {path} does not exist; download CUB_200_2011.tgz from {CUB_URL}{alternative}"
        )
    text = read_text(path, "CUB file", f"download CUB_200_2011.tgz again from {CUB_URL}")
    rows: dict[int, tuple[int, tuple[Any, ...]]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"CUB file {path}, line {n}"
        if len(fields) != len(columns):
            expected = " ".join(f"<{name}>" for name, _ in columns)
            raise ValueError(f"{where}: expected {len(columns)} columns, '{expected}', got {line.strip()!r}")
        values = []
        for (name, kind), field in zip(columns, fields, strict=True):
            try:
                value = kind(field)
            except ValueError:  # also an integer of over 4300 digits
                kind_name = "an integer" if kind is int else "a number"
                raise ValueError(f"{where}: {name} {field[:20]!r} is not {kind_name}") from None
            if kind is float and not math.isfinite(value):  # nan, inf, 1e309
                raise ValueError(f"{where}: {name} {field[:20]!r} is not a finite number")
            values.append(value)
        if values[0] in rows:
            raise ValueError(f"{where}: {columns[0][0]} {values[0]} repeats line {rows[values[0]][0]}")
        rows[values[0]] = (n, tuple(values[1:]))
    return rows


class CUBDataModule(ClassificationDataModule):
    """Caltech-UCSD Birds CUB-200-2011, 200 bird species, from the official text files and ``images/``.

    Label ``k`` is the ``k``-th class id of ``classes.txt`` in increasing order (class id ``k + 1`` in the
    official files). ``file_name`` of a sample is its ``images.txt`` path.

    Args:
        root: the ``CUB_200_2011`` folder, or the folder holding it.
        crop_to_bbox: crop each image to its box in ``bounding_boxes.txt`` before the transforms.
        other arguments: see :class:`~mobiletasks.data.classification.base.ClassificationDataModule`.

    Raises:
        FileNotFoundError: a file or listed images are missing (when first needed).
        ValueError: a malformed or inconsistent line (the message names the file and the line).

    Example:
        >>> dm = CUBDataModule("data", crop_to_bbox=True)  # nothing is read yet
        >>> dm.crop_to_bbox
        True
    """

    def __init__(
        self,
        root: PathLike,
        crop_to_bbox: bool = False,
        image_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        crop_fraction: float = 0.875,
        predict_images: PathLike | None = None,
    ) -> None:
        loader = (image_size, batch_size, eval_batch_size, num_workers)
        super().__init__(*loader, augment, crop_scale, hflip, crop_fraction, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        self.crop_to_bbox = crop_to_bbox
        self._class_ids: dict[int, int] = {}  # class id of classes.txt -> label
        self._class_names: list[str] = []

    @property
    def folder(self) -> Path:
        """The ``CUB_200_2011`` folder: ``root`` or ``root/CUB_200_2011``."""
        for folder in (self.root, self.root / "CUB_200_2011"):
            if (folder / "images.txt").is_file():
                return folder
        raise FileNotFoundError(
            f"CUB file {self.root / 'images.txt'} does not exist (nor {self.root / 'CUB_200_2011' / 'images.txt'}); "
            f"download CUB_200_2011.tgz from {CUB_URL}, unpack it and set root to the CUB_200_2011 folder"
        )

    @property
    def class_names(self) -> list[str]:
        if not self._class_names:
            path = self.folder / "classes.txt"
            rows = read_cub_file(path)
            if not rows:
                raise ValueError(f"CUB file {path} lists no classes; expected lines '<class id> <NNN.Name>'")
            self._class_ids = {class_id: label for label, class_id in enumerate(sorted(rows))}
            self._class_names = [re.sub(r"^\d+\.", "", rows[i][1][0]) for i in sorted(rows)]
        return list(self._class_names)

    def make_dataset(self, split: str) -> ClassificationDataset:
        folder, classes = self.folder, self.class_names
        label_of = self._class_ids
        images = read_cub_file(folder / "images.txt")
        for n, (path,) in images.values():
            if any(part in ("", ".", "..") for part in path.split("/")):  # "/x.jpg", "../x.jpg", "." (images/)
                raise ValueError(
                    f"CUB file {folder / 'images.txt'}, line {n}: path {path!r} is not a file below images/, like "
                    "'001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg'"
                )
        labels = _read_matching(folder / "image_class_labels.txt", images)
        is_train = _read_matching(folder / "train_test_split.txt", images)
        _check_values(folder / "image_class_labels.txt", labels, "class id", label_of, "a class id of classes.txt")
        _check_values(folder / "train_test_split.txt", is_train, "is_training_image", (0, 1), "1 (train) or 0 (test)")
        ids = [i for i in sorted(images) if is_train[i][1][0] == (split == "train")]
        paths = [folder / "images" / images[i][1][0] for i in ids]
        paths = find_files(paths, "CUB images", f"images.txt lists them; download CUB_200_2011.tgz from {CUB_URL}")
        targets = np.array([label_of[labels[i][1][0]] for i in ids], dtype=np.int64)
        boxes = None
        if self.crop_to_bbox:
            table = _read_matching(folder / "bounding_boxes.txt", images)
            for n, (x, y, w, h) in table.values():
                where = f"CUB file {folder / 'bounding_boxes.txt'}, line {n}"
                if not (w > 0 and h > 0):
                    raise ValueError(f"{where}: box width {w} and height {h} must be positive")
                if not (x < x + w < math.inf and y < y + h < math.inf):  # 1e308 + 1e308 or 1e308 + 4
                    raise ValueError(
                        f"{where}: box x {x}, y {y}, width {w}, height {h} are not pixels of an image (x + width and "
                        "y + height must be finite and beyond x and y)"
                    )
            xywh = np.array([table[i][1] for i in ids], dtype=np.float64).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return ClassificationDataset(paths, targets, classes, folder / "images", self.split_transform(split), boxes)


def _read_matching(path: Path, images: dict[int, Any]) -> dict[int, tuple[int, tuple[Any, ...]]]:
    """The rows of ``path``, which must have exactly the image ids of ``images.txt``."""
    table = read_cub_file(path)
    for i, (n, _) in table.items():
        if i not in images:
            raise ValueError(f"CUB file {path}, line {n}: image id {i} is not in images.txt")
    absent = [i for i in images if i not in table]
    if absent:
        shown = ", ".join(f"{i} (images.txt line {images[i][0]})" for i in absent[:_SHOW])
        raise ValueError(f"CUB file {path} lacks {len(absent)} image id(s) of images.txt: {shown}")
    return table


def _check_values(path: Path, table: dict[int, Any], name: str, valid: Any, expected: str) -> None:
    for n, (value,) in table.values():
        if value not in valid:
            raise ValueError(f"CUB file {path}, line {n}: {name} {value} is not {expected}")
