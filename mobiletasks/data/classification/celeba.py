"""CelebA face attributes: 40 binary attributes per aligned face (Liu et al., "Deep Learning Face Attributes in
the Wild", ICCV 2015).

The official release, as downloaded (torchvision's ``CelebA`` reads the same files, under ``root/celeba/``):

- ``Img/img_align_celeba.zip``: the "Align&Cropped" images, ``img_align_celeba/000001.jpg`` ... ``202599.jpg``
  (218 x 178 pixels, faces centered);
- ``Anno/list_attr_celeba.txt``: line 1 the number of images; line 2 the 40 attribute names separated by
  spaces (with a trailing space); then one line per image, ``000001.jpg -1  1  1 -1 ...``: its name and the
  40 values, -1 (absent) or 1 (present), right-aligned in 2-character columns;
- ``Eval/list_eval_partition.txt``: ``000001.jpg 0`` per image: 0 train (162,770), 1 val (19,867), 2 test
  (19,962).

:class:`CelebADataModule` expects them side by side: ``root/img_align_celeba/``, ``root/list_attr_celeba.txt``,
``root/list_eval_partition.txt``. The text files are tokenized with numpy (the 202,599-line attribute file in
about half a second); a malformed file raises ValueError naming the file, the line and the fix.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobiletasks.common import PathLike
from mobiletasks.data.classification.base import ClassificationDataModule, ClassificationDataset
from mobiletasks.data.files import find_files

__all__ = ["CelebADataModule", "read_attribute_names", "read_attributes", "read_partition"]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "predict": 1}  # list_eval_partition.txt; predict reads val
_ATTR_FIX = "download list_attr_celeba.txt again from the CelebA Anno/ folder"
_PARTITION_FIX = "download list_eval_partition.txt again from the CelebA Eval/ folder"


def _open(path: PathLike, folder: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CelebA file {path} does not exist; download it from the CelebA {folder} folder")
    return path


def _head(path: Path, line1: bytes, line2: bytes) -> tuple[int, list[str]]:
    """The image count (line 1) and the attribute names (line 2) of an attribute file."""
    count = line1.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace").strip()
    if not (count.isascii() and count.isdigit() and len(count) <= 18):  # int() refuses over 4300 digits
        csv = " (this looks like Kaggle's CSV version; use the official .txt)" if "," in count else ""
        raise ValueError(f"{path}, line 1: expected the number of images, got {count[:40]!r}{csv}; {_ATTR_FIX}")
    names = line2.decode("utf-8", "replace").split()
    if not names:
        raise ValueError(f"{path}, line 2: expected the attribute names, got an empty line; {_ATTR_FIX}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}, line 2: attribute names repeat: {', '.join(repeated)}; {_ATTR_FIX}")
    return int(count), names


def _rows(path: Path, body: bytes, first_line: int, columns: int, what: str, fix: str) -> tuple[list[str], np.ndarray]:
    """Split ``body`` (the file from line ``first_line`` on) into rows of ``columns`` whitespace-separated
    tokens: the first token of each row, and the others as 2-byte strings [N, columns - 1] (``b"??"`` for a
    longer token). Trailing blank lines are ignored; repeated first tokens, and first tokens that are not file names,
    raise ValueError."""
    buf = np.frombuffer(body, np.uint8)
    edges = np.diff((buf <= 32).view(np.int8), prepend=np.int8(1), append=np.int8(1))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)  # of every token
    line_starts = np.searchsorted(starts, np.flatnonzero(buf == 10))  # the first token after each newline
    counts = np.diff(line_starts, prepend=0, append=len(starts))  # tokens per line
    counts = counts[: (np.flatnonzero(counts)[-1] + 1) if counts.any() else 0]
    bad = np.flatnonzero(counts != columns)
    if len(bad):
        line, got = first_line + bad[0], counts[bad[0]]
        raise ValueError(f"{path}, line {line}: expected {columns} columns ({what}), got {got}; {fix}")
    begin, end = starts.reshape(-1, columns), ends.reshape(-1, columns)  # [row, column]
    first = zip(begin[:, 0].tolist(), end[:, 0].tolist(), strict=True)
    names = [body[s:e].decode("utf-8", "replace") for s, e in first]
    _check_unique(path, names, first_line, fix)
    _check_file_names(path, names, first_line, fix)
    begin, length = begin[:, 1:], end[:, 1:] - begin[:, 1:]
    second = buf[np.minimum(begin + 1, len(buf) - 1)] * (length == 2)  # 0 for a 1-byte token
    cells = np.stack([buf[begin], second], axis=-1).view("S2")[..., 0]
    cells[length > 2] = b"??"  # no valid value is longer than 2 bytes
    return names, cells


def _check_unique(path: Path, names: list[str], first_line: int, fix: str) -> None:
    if len(set(names)) == len(names):
        return
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if seen.setdefault(name, i) != i:
            line, first = first_line + i, first_line + seen[name]
            raise ValueError(f"{path}, line {line}: image {name} is listed again (first on line {first}); {fix}")


def _check_file_names(path: Path, names: list[str], first_line: int, fix: str) -> None:
    """Image names are names of files in the image folder: no paths ("/x.jpg", "../x.jpg"), not "." or ".."."""
    for i, name in enumerate(names):
        if "/" in name or name in (".", ".."):
            raise ValueError(
                f"{path}, line {first_line + i}: image name {name!r} is not a file name like 000001.jpg; {fix}"
            )


def _token(body: bytes, row: int, column: int) -> str:
    """Token ``column`` of line ``row`` of ``body`` (0-based), separated as :func:`_rows` separates them (by any
    byte up to the space, control bytes too), for error messages."""
    tokens = [token for token in re.split(rb"[\x00- ]+", body.split(b"\n")[row]) if token]
    return tokens[column].decode("utf-8", "replace")


def read_attribute_names(path: PathLike) -> list[str]:
    """The attribute names of a ``list_attr_celeba.txt`` (line 2), reading only its first two lines."""
    path = _open(path, "Anno/")
    with path.open("rb") as file:
        return _head(path, file.readline(), file.readline())[1]


def read_attributes(path: PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read CelebA's ``list_attr_celeba.txt``: ``(attribute names, image names, values int8 [N, K] of -1/1)``.

    Example:
        >>> path = getfixture("tmp_path") / "list_attr_celeba.txt"
        >>> _ = path.write_text("2\\nSmiling Young \\n000001.jpg -1  1\\n000002.jpg  1  1\\n")
        >>> names, files, values = read_attributes(path)
        >>> names, files, values.tolist()
        (['Smiling', 'Young'], ['000001.jpg', '000002.jpg'], [[-1, 1], [1, 1]])

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed file; the message names the file, the 1-based line and the fix.
    """
    path = _open(path, "Anno/")
    line1, line2, body = ([*path.read_bytes().split(b"\n", 2), b"", b""])[:3]
    count, names = _head(path, line1, line2)
    files, cells = _rows(path, body, 3, len(names) + 1, f"an image name and {len(names)} values", _ATTR_FIX)
    if count != len(files):
        raise ValueError(f"{path}, line 1: says {count} images but the file lists {len(files)}; {_ATTR_FIX}")
    positive, negative = cells == b"1", cells == b"-1"
    bad = np.argwhere(~(positive | negative))
    if len(bad):
        row, col = bad[0].tolist()
        value = _token(body, row, col + 1)
        raise ValueError(
            f"{path}, line {row + 3}: value {value!r} for attribute {names[col]} of {files[row]}; values must be "
            f"-1 or 1; {_ATTR_FIX}"
        )
    return names, files, positive.astype(np.int8) - negative.astype(np.int8)


def read_partition(path: PathLike) -> dict[str, int]:
    """Read CelebA's ``list_eval_partition.txt`` (``000001.jpg 0`` per line): image name -> 0 train, 1 val,
    2 test, in file order (so the image at position ``i`` is on line ``i + 1``). Errors as :func:`read_attributes`.
    """
    path = _open(path, "Eval/")
    body = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    files, cells = _rows(path, body, 1, 2, "an image name and its partition", _PARTITION_FIX)
    codes = cells[:, 0]
    bad = np.flatnonzero(~np.isin(codes, [b"0", b"1", b"2"]))
    if len(bad):
        value = _token(body, bad[0], 1)
        raise ValueError(
            f"{path}, line {bad[0] + 1}: partition {value!r} of {files[bad[0]]} must be 0 (train), 1 (val) or "
            f"2 (test); {_PARTITION_FIX}"
        )
    return dict(zip(files, codes.astype(np.int64).tolist(), strict=True))


def _unknown_image(name: str, path: Path, line: int, other: Path) -> ValueError:
    return ValueError(
        f"unknown image {name} ({path}, line {line}) is not in {other}; the two files must list the same images: "
        "download both again"
    )


class CelebADataModule(ClassificationDataModule):
    """CelebA attribute classification: targets are float32 [K] of 0/1 (1 where the attribute file says 1).

    ``root`` holds ``img_align_celeba/``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``, or a
    ``celeba/`` folder that does (torchvision's layout). The splits are the official partition (0 train,
    1 val, 2 test); "predict" reads val unless ``predict_images`` is set. ``class_names`` are the attribute
    names (or ``attributes``), read from the attribute file's first two lines only.

    Args:
        root: the dataset folder.
        crop_scale: the area range of the training crops; the faces are aligned, so the crops are mild.
        hflip: CelebA's attributes do not know left from right, so flips are on.
        other loader arguments: see :class:`~mobiletasks.data.classification.base.ClassificationDataModule`.
        attributes: train on these attributes only (names from the attribute file), in this order.
        attr_file, partition_file, image_dir: the file and folder names under ``root``.

    Example:
        >>> dm = CelebADataModule("data/celeba", attributes=["Smiling", "Male"])  # nothing is read yet
        >>> dm.multi_label, dm.attributes
        (True, ['Smiling', 'Male'])
    """

    multi_label = True

    def __init__(
        self,
        root: PathLike,
        image_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.64, 1.0),
        hflip: bool = True,
        crop_fraction: float = 0.875,
        predict_images: PathLike | None = None,
        *,
        attributes: Sequence[str] | None = None,
        attr_file: str = "list_attr_celeba.txt",
        partition_file: str = "list_eval_partition.txt",
        image_dir: str = "img_align_celeba",
    ) -> None:
        loader = (image_size, batch_size, eval_batch_size, num_workers)
        super().__init__(*loader, augment, crop_scale, hflip, crop_fraction, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        if isinstance(attributes, str):  # one name
            attributes = [attributes]
        self.attributes = None if attributes is None else list(attributes)
        if self.attributes is not None and (not self.attributes or len(set(self.attributes)) < len(self.attributes)):
            raise ValueError(f"attributes must be distinct attribute names, at least one, got {self.attributes}")
        self.attr_file, self.partition_file, self.image_dir = attr_file, partition_file, image_dir
        self._names: list[str] | None = None
        self._columns: list[int] = []  # of class_names in the attribute file
        self._table: tuple[list[str], np.ndarray, np.ndarray] | None = None  # image names, values, partition

    @property
    def folder(self) -> Path:
        """``root``, or ``root/celeba`` when only that holds the attribute file."""
        for folder in (self.root, self.root / "celeba"):
            if (folder / self.attr_file).is_file():
                return folder
        raise FileNotFoundError(
            f"CelebA attribute file {self.root / self.attr_file} does not exist (nor {self.root / 'celeba'}/"
            f"{self.attr_file}); download {self.attr_file} from the CelebA Anno/ folder into root"
        )

    @property
    def class_names(self) -> list[str]:
        if self._names is None:
            path = self.folder / self.attr_file
            names = read_attribute_names(path)
            unknown = [name for name in self.attributes or () if name not in names]
            if unknown:
                raise ValueError(f"attributes {unknown} are not in {path}; known: {', '.join(names)}")
            self._columns = [names.index(name) for name in self.attributes or names]
            self._names = [names[c] for c in self._columns]
        return self._names

    def _read(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The attribute file's image names and values, and each image's partition code; files cross-checked."""
        if self._table is None:
            attr_path, part_path = self.folder / self.attr_file, self.folder / self.partition_file
            _, files, values = read_attributes(attr_path)
            partition = read_partition(part_path)
            codes = np.fromiter((partition.get(f, -1) for f in files), np.int64, len(files))
            unknown = np.flatnonzero(codes < 0)
            if len(unknown):
                raise _unknown_image(files[unknown[0]], attr_path, unknown[0] + 3, part_path)
            if len(partition) > len(files):
                listed = set(files)
                line, name = next((i + 1, n) for i, n in enumerate(partition) if n not in listed)
                raise _unknown_image(name, part_path, line, attr_path)
            self._table = files, values, codes
        return self._table

    def make_dataset(self, split: str) -> ClassificationDataset:
        names = self.class_names  # sets _columns
        files, values, codes = self._read()
        rows = np.flatnonzero(codes == SPLIT_CODES[split])
        if not len(rows):
            raise ValueError(
                f"{self.folder / self.partition_file} puts no image in the {split} split (partition "
                f"{SPLIT_CODES[split]}); the official file has 0 (train), 1 (val) and 2 (test)"
            )
        images = self.folder / self.image_dir
        paths = [images / files[i] for i in rows]
        fix = f"download img_align_celeba.zip from the CelebA Img/ folder and unzip it into {images.parent}"
        paths = find_files(paths, f"CelebA {split} images", fix, any_suffix=True)  # img_align_celeba_png: .png
        targets = (values[rows][:, self._columns] == 1).astype(np.float32)
        return ClassificationDataset(paths, targets, names, images, self.split_transform(split))
