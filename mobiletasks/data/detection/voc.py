"""Pascal VOC detection: the VOCdevkit layout (``VOC2007/``, ``VOC2012/`` with ``Annotations/*.xml``,
``JPEGImages/``, ``ImageSets/Main/<set>.txt``).

VOC boxes are 1-based inclusive pixels; they become continuous xyxy ``(xmin - 1, ymin - 1, xmax, ymax)``,
so that the continuous IoU equals the devkit's "+1" IoU.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from mobiletasks.data.base import check_split
from mobiletasks.data.detection.base import (
    DetectionDataModule,
    DetectionDataset,
    PathLike,
    Record,
    Transform,
    clean_boxes,
)
from mobiletasks.data.files import Folders, raise_if_missing, read_text

if TYPE_CHECKING:
    from mobiletasks.evaluation.voc import VOCEvaluator

logger = logging.getLogger(__name__)

# the 20 classes, in the devkit's (alphabetical) order
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def check_classes(classes: Sequence[str] | None) -> list[str]:
    """``classes`` as a list (default :data:`VOC_CLASSES`); empty or repeated names raise ValueError."""
    names = list(VOC_CLASSES if classes is None else classes)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct names, at least one, got {names}")
    return names


def parse_set(name: str) -> tuple[str, str]:
    """``"2007/trainval"`` -> ``("2007", "trainval")``."""
    year, _, image_set = name.partition("/")
    if not year or not image_set or "/" in image_set:
        raise ValueError(
            f"VOC set {name!r} must be '<year>/<image set>', e.g. '2007/trainval' for "
            "VOC2007/ImageSets/Main/trainval.txt"
        )
    return year, image_set


class VOCDetection(DetectionDataset):
    """Pascal VOC detection over one or more image sets, joined in order.

    ``image_id`` is the index in the joined list, ``file_name`` the image path relative to ``root``
    (``VOC2007/JPEGImages/000005.jpg``). Targets always carry ``difficult`` (bool [N]); with
    ``keep_difficult=False`` (training) difficult objects are left out, so it is all False.
    All XML files are parsed when the dataset is built; boxes are clipped and zero-area ones dropped.
    ``stats`` counts images, boxes (kept), difficult objects (kept or left out), clipped and dropped boxes.

    Args:
        root: the VOCdevkit folder, holding ``VOC2007/``, ``VOC2012/``, ...
        sets: image sets as ``"<year>/<set>"``: ``["2007/trainval", "2012/trainval"]``.
        classes: class names, label = index (default: the 20 VOC classes).
        keep_difficult: keep the objects marked difficult (for evaluation).
        transform: a :class:`~mobiletasks.data.transforms.DetectionTransform`; None: original images.

    Raises:
        FileNotFoundError: a year folder, an image set list, XML files or images are missing.
        ValueError: a malformed set name; an image set list that is not UTF-8, lists no image or an id with a
            ``/``; a malformed XML file or box (coordinates that are not finite numbers); an XML without
            ``<size>`` whose image cannot be read; or an object of a class not in ``classes`` (the message names
            the list or the XML file).
    """

    def __init__(
        self,
        root: PathLike,
        sets: Sequence[str] = ("2007/trainval",),
        classes: Sequence[str] | None = None,
        keep_difficult: bool = False,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        self.sets = [sets] if isinstance(sets, str) else list(sets)
        if not self.sets:
            raise ValueError("sets is empty; name at least one image set, e.g. ['2007/trainval']")
        self.class_names = check_classes(classes)
        self.keep_difficult = keep_difficult
        self._label_of = {name: label for label, name in enumerate(self.class_names)}
        entries = [entry for name in self.sets for entry in self._list_set(name)]
        no_xml = set(
            raise_if_missing((xml for _, xml in entries), "VOC annotation files are", "the image set lists them")
        )
        entries = [entry for entry in entries if entry[1] not in no_xml]  # (only within tolerate_missing)
        self.stats = {"images": len(entries), "boxes": 0, "difficult": 0, "clipped": 0, "dropped": 0}
        self._folders, self._renamed = Folders(), 0
        self.records = [self._parse(image, xml, image_id) for image_id, (image, xml) in enumerate(entries)]
        raise_if_missing((r.path for r in self.records), "VOC images are", "the image set lists them", self._folders)
        if self._renamed:
            logger.warning(
                "%s: %d images found by their XML's <filename> or another suffix than .jpg", self.root, self._renamed
            )
        self._log_stats(self.root)

    def _image(self, listed: Path, filename: str | None) -> Path:
        found = find_voc_image(listed, filename, self._folders)
        self._renamed += found != listed
        return found

    def _list_set(self, name: str) -> list[tuple[Path, Path]]:
        year, image_set = parse_set(name)
        folder = self.root / f"VOC{year}"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"VOC folder {folder} for set {name!r} does not exist; root (now {self.root}) must be the VOCdevkit "
                f"folder that holds VOC{year}/"
            )
        listing = folder / "ImageSets" / "Main" / f"{image_set}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"VOC image set list {listing} for set {name!r} does not exist")
        ids = read_image_set(listing)
        return [(folder / "JPEGImages" / f"{i}.jpg", folder / "Annotations" / f"{i}.xml") for i in ids]

    def _parse(self, image: Path, xml: Path, image_id: int) -> Record:
        try:
            tree = ET.parse(xml).getroot()
        except (ET.ParseError, LookupError, ValueError) as err:  # LookupError, ValueError: encodings expat lacks
            raise ValueError(f"VOC annotation file {xml} is not valid XML: {err}") from err
        image = self._image(image, tree.findtext("filename"))
        width, height = _int(tree.findtext("size/width")), _int(tree.findtext("size/height"))
        if (width <= 0 or height <= 0) and image.is_file():  # no <size>: read it from the image header
            try:
                with Image.open(image) as img:
                    width, height = img.size
            except (OSError, Image.DecompressionBombError) as err:
                raise ValueError(
                    f"VOC annotation file {xml} has no <size> and its image {image} cannot be read ({err}); add "
                    "<size><width>...</width><height>...</height></size> or replace the image"
                ) from None
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(tree.iter("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in self._label_of:
                raise ValueError(
                    f"VOC annotation file {xml}: object {k} has class {name!r}, which is not among the classes "
                    f"({', '.join(self.class_names)}); pass classes=[...] to include it"
                )
            is_difficult = _int(obj.findtext("difficult")) == 1
            self.stats["difficult"] += is_difficult
            if is_difficult and not self.keep_difficult:
                continue
            coords = ("xmin", "ymin", "xmax", "ymax")
            texts = [obj.findtext(f"bndbox/{c}") for c in coords]
            box = [_float(text) for text in texts]
            if not all(math.isfinite(v) for v in box):
                got = ", ".join(f"{c}={t if t is None else t[:20]!r}" for c, t in zip(coords, texts, strict=True))
                raise ValueError(
                    f"VOC annotation file {xml}: object {k} ({name}) needs a <bndbox> with numeric xmin, ymin, "
                    f"xmax, ymax (finite pixels), got {got}"
                )
            boxes.append([box[0] - 1, box[1] - 1, box[2], box[3]])  # 1-based inclusive -> continuous
            labels.append(self._label_of[name])
            difficult.append(is_difficult)
        clipped, keep, n_clipped = clean_boxes(np.array(boxes, dtype=np.float64), width, height)
        self.stats["clipped"] += n_clipped
        self.stats["dropped"] += int((~keep).sum())
        self.stats["boxes"] += int(keep.sum())
        return Record(
            image,
            image.relative_to(self.root).as_posix(),
            image_id,
            width,
            height,
            clipped[keep],
            np.array(labels, dtype=np.int64)[keep],
            np.array(difficult, dtype=bool)[keep],
        )


def find_voc_image(listed: Path, filename: str | None, folders: Folders) -> Path:
    """The image of a VOC id: ``JPEGImages/<id>.jpg`` as the devkit names it, else the XML's ``<filename>`` (as
    labelImg, CVAT and Roboflow write it; a Windows path in it counts by its last part), else the one image named
    ``<id>`` with another suffix; ``listed`` itself when there is none (then reported missing)."""
    found = folders.find(listed)
    name = re.split(r"[\\/]", filename.strip())[-1] if filename else ""
    if found is None and name not in ("", ".", ".."):
        found = folders.find(listed.with_name(name))
    return found or folders.find(listed, any_suffix=True) or listed


def xml_filename(xml: Path) -> str | None:
    """The ``<filename>`` of a VOC annotation file, or None (no file, not XML, no such element)."""
    try:
        return ET.parse(xml).getroot().findtext("filename") if xml.is_file() else None
    except (ET.ParseError, LookupError, ValueError):
        return None


def read_image_set(listing: Path) -> list[str]:
    """The image ids of a VOC image set list (``ImageSets/Main/<set>.txt``, ``ImageSets/Segmentation/<set>.txt``):
    the first word of each line (Main's per-class lists add a flag after it).

    Raises:
        ValueError: the list is not UTF-8 text, names no image, or an id is a path (the message names the list
            and the line).
    """
    text = read_text(listing, "VOC image set list", "it lists one image id per line, e.g. 000005")
    ids = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            ids.append(line.split()[0])
            if "/" in ids[-1]:  # "/x" would even leave the devkit
                raise ValueError(
                    f"VOC image set list {listing}, line {n}: image id {ids[-1]!r} is a path; an id is the name of "
                    "JPEGImages/<id>.jpg and Annotations/<id>.xml without the extension, e.g. 000005"
                )
    if not ids:
        raise ValueError(f"VOC image set list {listing} lists no images; it lists one image id per line, e.g. 000005")
    return ids


def _float(text: str | None) -> float:
    """The number in ``text``; nan for none or garbage."""
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _int(text: str | None) -> int:
    """The whole part of the number in ``text`` (``"500"``, ``"500.0"``); 0 for none, garbage, nan or infinity."""
    value = _float(text)
    return int(value) if math.isfinite(value) else 0


class VOCDetectionDataModule(DetectionDataModule):
    """Pascal VOC detection from a VOCdevkit folder.

    Training joins ``train_sets`` (augmented, ``image_size`` square, difficult objects left out unless
    ``keep_difficult``); val/test keep every object with its ``difficult`` flag, at the original size.
    Without ``test_sets`` the test split is the val split; without ``predict_images`` prediction runs on
    the val split.

    Args:
        root: the VOCdevkit folder (holding ``VOC2007/``, ``VOC2012/``).
        train_sets, val_sets, test_sets: image sets as ``"<year>/<set>"``.
        classes: class names (default: the 20 VOC classes).
        keep_difficult: keep difficult objects in training.
        image_size: side of the square training images (300: SSD300).
        batch_size: training batch size; ``eval_batch_size`` (default ``batch_size``) for the others.
        num_workers: DataLoader worker processes per process (None: from the CPU count, ``default_num_workers``).
        augment: SSD augmentation for training; False: resize only.
        predict_images: a folder of images (any size) to predict on instead of the val split.

    Example:
        >>> dm = VOCDetectionDataModule("data/VOCdevkit")  # nothing is read yet
        >>> dm.num_classes, dm.class_names[:2]
        (20, ['aeroplane', 'bicycle'])
    """

    def __init__(
        self,
        root: PathLike,
        train_sets: Sequence[str] = ("2007/trainval", "2012/trainval"),
        val_sets: Sequence[str] = ("2007/test",),
        test_sets: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        keep_difficult: bool = False,
        image_size: int = 300,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        augment: bool = True,
        predict_images: str | None = None,
    ) -> None:
        super().__init__(image_size, batch_size, eval_batch_size, num_workers, augment, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        self.splits: dict[str, list[str]] = {"train": list(train_sets), "val": list(val_sets)}
        if test_sets is not None:
            self.splits["test"] = list(test_sets)
        for split, sets in self.splits.items():
            for name in sets:
                parse_set(name)
            if not sets:
                raise ValueError(f"{split}_sets is empty; name at least one image set, e.g. '2007/test'")
        self._classes = check_classes(classes)
        self.keep_difficult = keep_difficult

    @property
    def class_names(self) -> list[str]:
        return list(self._classes)

    def make_dataset(self, split: str) -> VOCDetection:
        check_split(split, ("train", "val", "test", "predict"))
        return VOCDetection(
            self.root,
            self.splits.get(split, self.splits["val"]),
            classes=self._classes,
            keep_difficult=self.keep_difficult if split == "train" else True,
            transform=self.split_transform(split),
        )

    def evaluator(self, split: Literal["val", "test"] = "val") -> VOCEvaluator:
        """A ``VOCEvaluator`` over ``class_names`` (targets carry the ``difficult`` flags)."""
        from mobiletasks.evaluation.voc import VOCEvaluator

        check_split(split, ("val", "test"))
        return VOCEvaluator(self.class_names)
