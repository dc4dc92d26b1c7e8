"""Semantic segmentation data: index masks read as class arrays, the VOC2012 and COCO-semantic layouts.

A mask is a single-channel PNG whose pixel values are class indices: a palette ("P") PNG as VOC ships
them (the palette only colours the indices, which are what is read) or a grayscale ("L") PNG (SBD's
``SegmentationClassAug``, COCO semantic folders). A 256-entry lookup table turns pixel values into labels
``0..num_classes-1`` or 255 (ignored: VOC's boundary band, padding).

Bad data, by kind:

- a missing folder, list, image or mask: ``FileNotFoundError`` when the dataset is built;
- a pixel value with no class (e.g. 21..254 in VOC), a colour picture instead of an index mask, or masks that
  hold only 0 and 255 (objects saved as 255, which means "ignore"): ``ValueError`` naming the mask (folder)
  and the fix, at set-up, from a sample of the split's masks (:meth:`SegmentationDataset.check_masks`; a
  wrong class list or a binary dataset shows in any sample);
- an image or mask that cannot be decoded, a mask outside the sample with values that are no class, or an
  image whose size differs from its mask's: the sample is skipped as in detection (a warning naming the file,
  ``dataset.skipped`` counts it, ``__getitem__`` returns None; see :mod:`mobiletasks.data.skips` for what
  each split does then), never a crash deep in an epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from mobiletasks.common import IGNORE_INDEX, PathLike
from mobiletasks.data.detection.voc import check_classes, find_voc_image, read_image_set, xml_filename
from mobiletasks.data.files import Folders, find_files, resolve
from mobiletasks.data.io import ImageReadError, image_to_tensor, list_images, read_image
from mobiletasks.data.skips import SkipLog

logger = logging.getLogger(__name__)

# (uint8 image [H, W, 3], mask [H, W]) -> (image Tensor [3, H', W'], int64 mask [H', W']);
# mobiletasks.data.transforms.SegmentationTransform is one
SegTransform = Callable[[np.ndarray, np.ndarray], tuple[Tensor, Tensor]]
Sample = tuple[Tensor, dict[str, Any]]
INVALID = -1  # lookup-table entry of a pixel value that has no class: an error when met
# the COCO category ids of the 20 VOC classes, in VOC order (torchvision references/segmentation CAT_LIST)
COCO_VOC_CATEGORY_IDS = (5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)


@dataclass
class MaskRecord:
    """One image and its mask (``mask`` None: an image to predict on)."""

    path: Path
    mask: Path | None
    file_name: str
    image_id: int


def identity_lut(num_classes: int) -> np.ndarray:
    """Pixel ``k`` -> label ``k`` for ``k < num_classes``, 255 stays 255, anything else is invalid."""
    lut = np.full(256, INVALID, np.int64)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def read_mask(path: Path) -> np.ndarray:
    """The pixel values of a single-channel mask PNG, uint8 [H, W]: a palette ("P") PNG gives its indices, a
    grayscale one ("L", or "LA" whose alpha is dropped) its values, a 1-bit one ("1") 0 and 1, a 16- or 32-bit one
    ("I;16", "I") its values when they are all below 256 (index masks saved by OpenCV, scikit-image or MATLAB).

    Raises:
        ImageReadError: the file cannot be decoded.
        ValueError: the file is a colour image rather than an index mask, or a 16/32-bit one with values above 255.
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            values = np.asarray(img.getchannel(0) if mode in ("LA", "PA") else img)  # the alpha is no class
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read mask {path}: {type(err).__name__}: {err}") from err
    if mode not in _MASK_MODES or values.ndim != 2:
        raise ValueError(
            f"mask {path} is a {mode!r} image; segmentation masks must be single-channel PNGs whose pixel values "
            "are class indices (palette 'P' as VOC's SegmentationClass, or grayscale 'L'), not coloured pictures"
        )
    if values.size and mode.startswith("I") and (int(values.min()) < 0 or int(values.max()) > 255):
        raise ValueError(
            f"mask {path} is a {mode!r} image with values {int(values.min())}..{int(values.max())}; class indices "
            "of a mask are 0..255 (255 = ignore): re-save it with its class indices as 8-bit values"
        )
    return values.astype(np.uint8, copy=False)


_MASK_MODES = ("P", "L", "1", "I;16", "I;16B", "I;16L", "I", "LA", "PA")


class SegmentationDataset(Dataset):
    """``records`` in, ``(image, target)`` samples out; target: ``mask`` int64 [H, W], ``image_id``, ``file_name``.

    Args:
        records: the images and their masks.
        class_names: names of the labels, background first.
        lut: int [256]: label of each pixel value (0..num_classes-1, 255 ignored, -1 invalid).
        transform: a :class:`~mobiletasks.data.transforms.SegmentationTransform`; None: original image and mask.
    """

    def __init__(
        self,
        records: list[MaskRecord],
        class_names: Sequence[str],
        lut: np.ndarray,
        transform: SegTransform | None = None,
    ) -> None:
        self.records = records
        self.class_names = list(class_names)
        self.lut = np.asarray(lut, np.int64)
        self._labels8 = np.where(self.lut == INVALID, 0, self.lut).astype(np.uint8)  # labels are 0..255
        self.transform = transform
        self.stats: dict[str, int] = {"images": len(records)}
        self.skip_log = SkipLog()

    @property
    def skipped(self) -> int:
        """How many times a sample was skipped (unreadable image or mask, size mismatch), all workers."""
        return self.skip_log.count

    def __len__(self) -> int:
        return len(self.records)

    def load_mask(self, path: Path) -> np.ndarray:
        """The labels of mask ``path``, uint8 [H, W]; ValueError naming the file on a pixel value with no class."""
        return self.labels_of(read_mask(path), path)

    def labels_of(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """The labels (uint8) of the pixel values ``raw`` (uint8) of mask ``path``; ValueError on a value with no
        class. One counting pass and one uint8 lookup: a quarter of the memory traffic of an int64 lookup."""
        bad = np.flatnonzero((np.bincount(raw.ravel(), minlength=256) > 0) & (self.lut == INVALID)).tolist()
        if bad:
            valid = np.flatnonzero(self.lut != INVALID).tolist()
            raise ValueError(
                f"mask {path} holds pixel values {bad[:10]} that are no class: the {len(self.class_names)} classes "
                f"take values {_ranges(valid)} (255 = ignore); fix the mask or the class list"
            )
        return self._labels8[raw]

    def check_masks(self, sample: int = 16) -> None:
        """Read ``sample`` masks spread over the split (a cheap set-up check) and fail early on masks that
        cannot be right: pixel values with no class, colour pictures, and the binary 0/255 pattern.

        Raises:
            ValueError: naming the mask (or the mask folder) and the fix. The 0/255 pattern: no sampled mask
                holds a pixel of any class but the first (background) while some hold 255, which means
                "ignore": objects saved as 255 would never be learned nor scored.
        """
        labelled = [r.mask for r in self.records if r.mask is not None]
        if not labelled:
            return
        picks = labelled[:: max(1, len(labelled) // sample)][:sample]
        pattern = MaskPattern(self.lut)
        for path in picks:
            try:
                raw = read_mask(path)
            except ImageReadError:
                continue  # skipped (and counted) when the sample is loaded
            pattern.add(raw, self.labels_of(raw, path))
        if pattern.binary_255():
            raise ValueError(pattern.message(picks[0].parent, self.class_names))

    def __getitem__(self, index: int) -> Sample | None:
        record = self.records[index]
        target: dict[str, Any] = {"image_id": record.image_id, "file_name": record.file_name}
        try:
            image = read_image(record.path)
            mask = None if record.mask is None else self.load_mask(record.mask)
        except ValueError as err:  # ImageReadError too: unreadable, or values that are no class
            self._skip(record, str(err))
            return None
        if mask is None:  # an image to predict on
            empty = np.zeros(image.shape[:2], np.uint8)
            return (self.transform(image, empty)[0] if self.transform else image_to_tensor(image)), target
        if mask.shape != image.shape[:2]:
            self._skip(
                record,
                f"image {record.path} is {image.shape[1]}x{image.shape[0]} pixels (after EXIF orientation) but its "
                f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]}; fix the image or the mask",
            )
            return None
        if self.transform is None:
            target["mask"] = torch.from_numpy(mask.astype(np.int64))
            return image_to_tensor(image), target
        image_t, target["mask"] = self.transform(image, mask)
        return image_t, target

    def _skip(self, record: MaskRecord, message: str) -> None:
        self.skip_log.add(record.file_name, message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.class_names)} classes, transform={self.transform})"


class MaskPattern:
    """Over the masks of a split: whether any holds a pixel of an object class, and how many hold nothing but
    0 and 255 while 255 is no object class here (``lut``): objects saved as 255, which means "ignore"."""

    def __init__(self, lut: np.ndarray) -> None:
        self.lut = lut
        self.objects = self.binary = self.checked = 0
        self.values: set[int] = set()

    def add(self, raw: np.ndarray, labels: np.ndarray) -> None:
        """One mask: its pixel values ``raw`` and their ``labels``."""
        self.checked += 1
        self.objects += bool(((labels > 0) & (labels != IGNORE_INDEX)).any())
        if bool((raw == IGNORE_INDEX).any()) and bool(np.isin(raw, (0, IGNORE_INDEX)).all()):
            self.binary += 1
            self.values.update(np.unique(raw).tolist())

    def binary_255(self) -> bool:
        """No mask shows an object, and some hold only 0 and 255 where 255 is not an object class."""
        return self.binary > 0 and not self.objects and int(self.lut[IGNORE_INDEX]) in (0, IGNORE_INDEX)

    def message(self, folder: Path, class_names: Sequence[str]) -> str:
        """The error naming the folder, what 255 means here, and how to encode the objects."""
        first = class_names[1] if len(class_names) > 1 else "object"
        values = " and ".join(str(v) for v in sorted(self.values))
        meaning = "means 'ignore' (VOC's boundary band)" if self.lut[IGNORE_INDEX] == IGNORE_INDEX else "is background"
        encode = (
            f"save each object pixel as 1, the index of {first!r} (mask // 255)"
            if len(class_names) == 2
            else f"save each object pixel as its class index, 1 to {len(class_names) - 1} (1 = {first!r}; with "
            "one object class, mask // 255)"
        )
        return (
            f"the masks in {folder} hold only the values {values} ({self.binary} of {self.checked} checked, none "
            f"with an object class): 255 {meaning} here, so no object pixel would be learned or scored. If 255 "
            f"marks your objects, {encode}, or read the masks with COCOSegmentationDataModule and a classes_json "
            f'that names 255, e.g. {{"0": "background", "255": "{first}"}}'
        )


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5, 255] -> "0..2, 5, 255"``."""
    parts: list[str] = []
    for v in values:
        if parts and parts[-1].split("..")[-1] == str(v - 1):
            parts[-1] = f"{parts[-1].split('..')[0]}..{v}"
        else:
            parts.append(str(v))
    return ", ".join(parts)


class VOCSegmentation(SegmentationDataset):
    """Pascal VOC semantic segmentation: ``VOC<year>/ImageSets/Segmentation/<split>.txt`` of ``root``.

    Masks come from ``SegmentationClass/`` (palette PNGs), or for ``split="train_aug"`` (the SBD-augmented
    list) from ``SegmentationClassAug/`` (grayscale index PNGs). Pixel value = label, 255 ignored, any other
    value an error. ``file_name`` is the image path relative to ``root``; ``image_id`` the index in the list.

    Args:
        root: the VOCdevkit folder, holding ``VOC<year>/``.
        split: the list's name: "train", "val", "trainval", "train_aug", ...
        year: "2012" (or "2007").
        classes: object class names (default the 20 VOC classes); background is prepended.
        transform: a :class:`~mobiletasks.data.transforms.SegmentationTransform`; None: originals.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        year: str = "2012",
        classes: Sequence[str] | None = None,
        transform: SegTransform | None = None,
    ) -> None:
        root = Path(root)
        folder = root / f"VOC{year}"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"VOC folder {folder} does not exist; root (now {root}) must be the VOCdevkit folder that holds "
                f"VOC{year}/ (or set year)"
            )
        listing = folder / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"VOC segmentation list {listing} does not exist; check split={split!r}")
        masks = folder / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
        if not masks.is_dir():
            raise FileNotFoundError(f"VOC mask folder {masks} for split={split!r} does not exist")
        ids = read_image_set(listing)
        folders = Folders()  # each image as VOC detection finds it: <id>.jpg, the XML's <filename>, <id>.png, ...
        listed = [folder / "JPEGImages" / f"{i}.jpg" for i in ids]
        images = [
            path
            if folders.find(path)
            else find_voc_image(path, xml_filename(folder / "Annotations" / f"{i}.xml"), folders)
            for i, path in zip(ids, listed, strict=True)
        ]
        mask_paths = [masks / f"{i}.png" for i in ids]
        images = find_files(images, "VOC images", f"{listing} lists them", folders=folders)
        mask_paths = find_files(mask_paths, "VOC masks", f"{listing} lists them")
        names = ["background", *check_classes(classes)]
        records = [
            MaskRecord(image, mask, image.relative_to(root).as_posix(), k)
            for k, (image, mask) in enumerate(zip(images, mask_paths, strict=True))
        ]
        super().__init__(records, names, identity_lut(len(names)), transform)


def coco_voc_lut() -> np.ndarray:
    """COCO category id -> VOC label: the 20 shared categories to 1..20, everything else (0 too) background."""
    lut = np.zeros(256, np.int64)
    for label, category_id in enumerate(COCO_VOC_CATEGORY_IDS, start=1):
        lut[category_id] = label
    return lut


def read_class_map(path: Path) -> tuple[list[str], np.ndarray]:
    """A JSON class map ``{"<pixel value>": "<class name>" | null}`` -> (class names, lookup table).

    Classes are the distinct names in order of their smallest pixel value (label = position; several
    values may share a name and so a class); ``null`` and values not listed become 255 (ignored).
    ``semantic/classes.json`` of coco128 is such a map (its "0": "unlabeled" is then class 0).
    """
    if not path.is_file():
        raise FileNotFoundError(f"class map {path} does not exist; set classes_json relative to root, or None")
    try:
        data = json.loads(path.read_text())
        entries = sorted((int(k), v) for k, v in data.items())
    except (ValueError, AttributeError) as err:
        raise ValueError(f"class map {path} must be a JSON object {{'<pixel value>': '<name>'}}: {err}") from err
    lut = np.full(256, IGNORE_INDEX, np.int64)
    names: list[str] = []
    for value, name in entries:
        if not 0 <= value <= 255 or not (name is None or isinstance(name, str)):
            raise ValueError(f"class map {path}: entry {value}: {name!r} needs a pixel value 0..255 and a name or null")
        if name is None:
            continue
        if name not in names:
            names.append(name)
        lut[value] = names.index(name)
    if not names or len(names) > 255:
        raise ValueError(f"class map {path} names {len(names)} classes; need 1 to 255")
    return names, lut


class MaskFolder(SegmentationDataset):
    """The images of ``images`` (sorted) with the masks ``masks/<image stem>.png``, mapped through ``lut``.

    Images without a mask are left out (``stats["no_mask"]``, a warning). ``image_id`` is the numeric file
    stem when all stems are numbers (COCO ids), else the index; ``file_name`` is relative to ``images``.
    ``masks=None``: images only, to predict on.
    """

    def __init__(
        self,
        images: PathLike,
        masks: PathLike | None,
        class_names: Sequence[str],
        lut: np.ndarray,
        transform: SegTransform | None = None,
    ) -> None:
        images = Path(images)
        paths = list_images(images)
        expected = [None if masks is None else Path(masks) / p.relative_to(images).with_suffix(".png") for p in paths]
        found = resolve([m for m in expected if m is not None], "masks") if masks is not None else []
        pairs = list(zip(paths, found or expected, strict=True))
        kept = [(p, m) for p, m in pairs if m is None or m.is_file()]
        if not kept:
            raise ValueError(f"no image of {images} has a mask <stem>.png in {masks}; check the mask folder")
        numeric = all(p.stem.isdigit() for p, _ in kept)
        records = [
            MaskRecord(p, m, p.relative_to(images).as_posix(), int(p.stem) if numeric else k)
            for k, (p, m) in enumerate(kept)
        ]
        super().__init__(records, class_names, lut, transform)
        self.stats["no_mask"] = len(pairs) - len(kept)
        if self.stats["no_mask"]:
            logger.warning(
                "%s: %d of %d images have no mask in %s and are left out",
                images,
                len(pairs) - len(kept),
                len(pairs),
                masks,
            )
