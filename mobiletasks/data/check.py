"""``mobiletasks data check``: read every file of a dataset before training, and report what is wrong in a table.

The data modules run the cheap part of these checks when they build a split (annotation files parsed and
checked, listed files present, a sample of masks read); this module builds the same datasets, so the same
errors come out, and then decodes every image and mask:

======================  ========  ==========================================================================
check                   severity  what
======================  ========  ==========================================================================
``setup``               error     an annotation file or list that cannot be used (the data module's message)
``missing``             error     files that the annotations or lists name but that do not exist
``unreadable``          error     files that cannot be decoded: truncated, corrupt, or not images
``size``                error     images whose size (after EXIF orientation) differs from the annotation's
``mask_size``           error     masks of another size than their image
``mask_values``         error     masks with pixel values outside the class set, or colour masks
``mask_255``            error     masks that hold only 0 and 255 (255 means "ignore")
``converted``           warning   images not stored as 8-bit RGB (grayscale, RGBA, CMYK, 16-bit, palette):
                                  converted to RGB when read
``rotated``             warning   images turned by their EXIF orientation: annotations must be upright
``clipped``             warning   boxes partly outside their image: clipped to it
``degenerate``          warning   boxes without area (or outside the image): dropped
``empty``               info      images without any object (negatives)
======================  ========  ==========================================================================

Errors make the command exit 1; warnings and infos do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from mobiletasks.data.classification.base import ClassificationDataset
from mobiletasks.data.detection.base import DetectionDataset
from mobiletasks.data.files import tolerate_missing
from mobiletasks.data.io import ImageInfo, ImageReadError, inspect_image
from mobiletasks.data.segmentation.datasets import MaskPattern, SegmentationDataset, read_mask

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Check:
    """One kind of problem: how bad it is, what it is, and what to do about it."""

    severity: Severity
    title: str
    fix: str


CHECKS: dict[str, Check] = {
    "setup": Check("error", "annotation files or lists that cannot be used", "see the message"),
    "missing": Check("error", "files listed but missing", "restore them, or remove them from the annotations"),
    "unreadable": Check("error", "unreadable, truncated or non-image files", "re-save or remove them"),
    "size": Check(
        "error",
        "images of another size than annotated (after EXIF orientation)",
        "fix the annotation's width/height, or the image; its boxes would not fit",
    ),
    "mask_size": Check("error", "masks of another size than their image", "save each mask at its image's size"),
    "mask_values": Check(
        "error", "masks with values outside the class set", "fix the class list / class map, or the masks"
    ),
    "mask_255": Check("error", "masks holding only 0 and 255 (255 = ignore)", "see the message"),
    "converted": Check("warning", "images not stored as 8-bit RGB", "none: converted to RGB when read"),
    "rotated": Check("warning", "images turned by their EXIF orientation", "annotate the upright image"),
    "clipped": Check("warning", "boxes partly outside their image", "none: clipped to the image"),
    "degenerate": Check("warning", "boxes without area", "none: dropped"),
    "empty": Check("info", "images without objects", "none: negatives, kept in evaluation"),
}


@dataclass
class Finding:
    count: int = 0
    examples: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # each file (example) is counted once


@dataclass
class Report:
    """What ``data check`` found: per split, the images scanned and, per check, a count and a few examples."""

    images: dict[str, int] = field(default_factory=dict)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # per split, a line that is not a finding

    def add(self, split: str, check: str, example: str = "", count: int = 1) -> None:
        if count <= 0:
            return
        finding = self.findings.setdefault((split, check), Finding())
        if example in finding.seen:
            return
        finding.seen.add(example)
        finding.count += count
        if example and len(finding.examples) < 3:
            finding.examples.append(example)

    def count(self, severity: Severity) -> int:
        """How many problems of ``severity`` (each file or box counted)."""
        return sum(f.count for (_, check), f in self.findings.items() if CHECKS[check].severity == severity)

    def table(self) -> str:
        """The summary: one line per split and check found, with an example and the fix."""
        splits = list(dict.fromkeys([*self.images, *(split for split, _ in self.findings), *self.notes]))
        w = max([5, *map(len, splits)]) + 2
        lines = [f"{'split':<{w}}{'severity':<10}{'count':>7}  problem"]
        order = {"error": 0, "warning": 1, "info": 2}
        for split in splits:
            if split in self.images:
                lines.append(f"{split:<{w}}{'':<10}{self.images[split]:>7}  images checked")
            if split in self.notes:
                lines.append(f"{split:<{w}}{'':<17}  {self.notes[split]}")
            rows = [(check, f) for (s, check), f in self.findings.items() if s == split]
            for check, finding in sorted(rows, key=lambda r: order[CHECKS[r[0]].severity]):
                info = CHECKS[check]
                lines.append(f"{split:<{w}}{info.severity:<10}{finding.count:>7}  {info.title} [{check}]")
                lines += [f"{'':<{w + 19}}e.g. {example}" for example in finding.examples]
                if info.fix != "see the message":
                    lines.append(f"{'':<{w + 19}}fix: {info.fix}")
        errors, warnings = self.count("error"), self.count("warning")
        lines.append(f"{errors} errors, {warnings} warnings")
        return "\n".join(lines)


def build(report: Report, split: str, make: Callable[[], Any]) -> tuple[Any | None, list[Path]]:
    """The dataset ``make()`` builds (files allowed to be missing) and the files it found missing (annotation
    files too, whose entries it leaves out); None after reporting why it cannot be built."""
    try:
        with tolerate_missing() as missing:
            return make(), missing
    except (ValueError, FileNotFoundError, OSError) as err:
        report.add(split, "setup", str(err))
        return None, []


def _report_missing(report: Report, split: str, missing: list[Path]) -> None:
    for path in missing:
        report.add(split, "missing", str(path))


def check_dataset(report: Report, split: str, dataset: Any, progress: bool = True) -> None:
    """Read every image (and mask) of a mobiletasks dataset and add what is wrong to ``report``."""
    if isinstance(dataset, DetectionDataset):
        _check_detection(report, split, dataset, progress)
    elif isinstance(dataset, SegmentationDataset):
        _check_segmentation(report, split, dataset, progress)
    elif isinstance(dataset, ClassificationDataset):
        _check_images(report, split, dataset.paths, [None] * len(dataset.paths), progress)
    else:
        raise TypeError(f"data check reads mobiletasks datasets, not {type(dataset).__name__}")


def _scan(items: Sequence[Any], split: str, progress: bool) -> Iterable[tuple[int, Any]]:
    return tqdm(enumerate(items), total=len(items), desc=f"checking {split}", disable=not progress, leave=False)


def _inspect(report: Report, split: str, path: Path) -> ImageInfo | None:
    """The image's description, or None after reporting it missing or unreadable (and its mode, rotation)."""
    if not path.is_file():
        report.add(split, "missing", str(path))
        return None
    try:
        info = inspect_image(path)
    except ImageReadError as err:
        report.add(split, "unreadable", str(err))
        return None
    if info.mode != "RGB":
        report.add(split, "converted", f"{path} ({info.mode})")
    if info.rotated:
        report.add(split, "rotated", str(path))
    return info


def _check_images(
    report: Report, split: str, paths: Sequence[Path], sizes: Sequence[tuple[int, int] | None], progress: bool
) -> None:
    report.images[split] = len(paths)
    for k, path in _scan(paths, split, progress):
        info = _inspect(report, split, path)
        expected = sizes[k]
        if info is not None and expected is not None and expected != (info.width, info.height):
            annotated = f"{expected[0]}x{expected[1]}"
            report.add(split, "size", f"{path} is {info.width}x{info.height}, annotated {annotated}")


def _check_detection(report: Report, split: str, dataset: DetectionDataset, progress: bool) -> None:
    sizes = [(r.width, r.height) if r.width and r.height else None for r in dataset.records]
    _check_images(report, split, [r.path for r in dataset.records], sizes, progress)
    stats = dataset.stats
    source = getattr(dataset, "annotations", None) or getattr(dataset, "root", "")
    report.add(split, "clipped", f"{source}: {stats.get('clipped', 0)} boxes", stats.get("clipped", 0))
    report.add(split, "degenerate", f"{source}: {stats.get('dropped', 0)} boxes", stats.get("dropped", 0))
    empty = [str(r.path) for r in dataset.records if r.boxes is not None and len(r.boxes) == 0]
    for name in empty:
        report.add(split, "empty", name)


def _check_segmentation(report: Report, split: str, dataset: SegmentationDataset, progress: bool) -> None:
    report.images[split] = len(dataset.records)
    pattern = MaskPattern(dataset.lut)
    for _, record in _scan(dataset.records, split, progress):
        info = _inspect(report, split, record.path)
        if record.mask is None:
            continue
        if not record.mask.is_file():
            report.add(split, "missing", str(record.mask))
            continue
        try:
            raw = read_mask(record.mask)
            labels = dataset.labels_of(raw, record.mask)
        except ImageReadError as err:
            report.add(split, "unreadable", str(err))
            continue
        except ValueError as err:  # values with no class, a colour picture
            report.add(split, "mask_values", str(err))
            continue
        if info is not None and labels.shape != (info.height, info.width):
            shape = f"{labels.shape[1]}x{labels.shape[0]}"
            report.add(split, "mask_size", f"{record.mask} is {shape}, its image {info.width}x{info.height}")
        pattern.add(raw, labels)
    labelled = [r.mask for r in dataset.records if r.mask is not None]
    if pattern.binary_255() and labelled:
        report.add(split, "mask_255", pattern.message(labelled[0].parent, dataset.class_names))


def _files(dataset: Any) -> list[Path]:
    if isinstance(dataset, ClassificationDataset):
        return list(dataset.paths)
    return [r.path for r in getattr(dataset, "records", [])]


def check_datamodule(datamodule: Any, progress: bool = True) -> Report:
    """Check every split of a mobiletasks data module (train, val, test where it has its own files, and
    ``predict_images`` where set), as its datasets read them."""
    report = Report()
    prepare = getattr(datamodule, "prepare_data", None)
    if callable(prepare):
        prepare()  # the generated Shapes datasets are written on first use
    checked: list[list[Path]] = []
    checked_splits: list[str] = []
    for split in ("train", "val", "test", "predict"):
        if split == "predict" and datamodule.predict_images is None:
            continue  # prediction reads the val split
        dataset, missing = build(report, split, _maker(datamodule, split))
        if dataset is None:
            continue
        files = _files(dataset)
        if files in checked:  # e.g. the test split reads the val files
            report.notes[split] = f"the same files as {checked_splits[checked.index(files)]} (checked there)"
            continue
        checked.append(files)
        checked_splits.append(split)
        _report_missing(report, split, missing)
        check_dataset(report, split, dataset, progress)
    return report


def _maker(datamodule: Any, split: str) -> Callable[[], Any]:
    """Builds the dataset of ``split`` as the data module does (without its mask sample check: all are read)."""
    if split == "predict":
        return lambda: datamodule.folder_dataset(datamodule.predict_images)
    return lambda: datamodule.make_dataset(split)


def check_coco(images: str | Path, annotations: str | Path, progress: bool = True) -> Report:
    """Check a COCO detection split: an image folder and its instances json."""
    from mobiletasks.data.detection.coco import COCODetection

    report = Report()
    dataset, missing = build(report, "coco", lambda: COCODetection(images, annotations))
    _report_missing(report, "coco", missing)
    if dataset is not None:
        check_dataset(report, "coco", dataset, progress)
    return report


def check_voc(
    root: str | Path, split: str, year: str = "2012", classes: Sequence[str] | None = None, progress: bool = True
) -> Report:
    """Check a Pascal VOC split of ``root`` (the VOCdevkit folder): its boxes (``ImageSets/Main/<split>.txt``)
    and its masks (``ImageSets/Segmentation/<split>.txt``), whichever lists exist."""
    from mobiletasks.data.detection.voc import VOCDetection
    from mobiletasks.data.segmentation.datasets import VOCSegmentation

    report = Report()
    folder = Path(root) / f"VOC{year}"
    lists = {kind: folder / "ImageSets" / kind / f"{split}.txt" for kind in ("Main", "Segmentation")}
    if not any(path.is_file() for path in lists.values()):
        message = (
            f"neither {lists['Main']} nor {lists['Segmentation']} exists; root must be the VOCdevkit folder "
            f"holding VOC{year}/ (set --year), and --split the name of an image set list"
        )
        report.add(split, "setup", message)
        return report
    if lists["Main"].is_file():
        name = f"{split}/boxes"
        dataset, missing = build(report, name, lambda: VOCDetection(root, [f"{year}/{split}"], classes, True))
        _report_missing(report, name, missing)
        if dataset is not None:
            check_dataset(report, name, dataset, progress)
    if lists["Segmentation"].is_file():
        name = f"{split}/masks"
        dataset, missing = build(report, name, lambda: VOCSegmentation(root, split, year, classes))
        _report_missing(report, name, missing)
        if dataset is not None:
            check_dataset(report, name, dataset, progress)
    return report
