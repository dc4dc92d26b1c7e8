"""Finding the files that annotations and lists name, as they are on disk, and saying what is missing and why.

Every data module goes through here: each folder is listed once (not a ``stat`` per file). A file is found by the
name the annotation gives; failing that, by the same name in another case (``0001.JPG`` for ``0001.jpg``,
common in datasets made on Windows or macOS); and where the annotation gives only an id (VOC's image sets), by
the one image with that stem (``0001.png``, ``0001.jpeg``), as labelImg, CVAT and Roboflow write them. Files
found so are counted in a warning. What is still missing is an error that says where it looked and what it
found there, or, within :func:`tolerate_missing` (``mobiletasks data check``), collected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mobiletasks.data.io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

_SHOW = 5  # file names listed in an error
_IMAGES = set(IMAGE_SUFFIXES)
_MISSING: ContextVar[list[Path] | None] = ContextVar("missing_files", default=None)


class Folders:
    """Directory listings, each read once: ``{lower-case name: [names]}`` per folder."""

    def __init__(self) -> None:
        self._listed: dict[Path, dict[str, list[str]]] = {}

    def names(self, folder: Path) -> dict[str, list[str]]:
        if folder not in self._listed:
            listed: dict[str, list[str]] = {}
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                listed.setdefault(p.name.lower(), []).append(p.name)
            self._listed[folder] = listed
        return self._listed[folder]

    def exists(self, path: Path) -> bool:
        return path.name in self.names(path.parent).get(path.name.lower(), [])

    def find(self, path: Path, any_suffix: bool = False) -> Path | None:
        """``path`` where it exists, else the same name in another case, else (``any_suffix``) the one image
        of its folder with its stem; None when there is none."""
        names = self.names(path.parent)
        same = names.get(path.name.lower(), [])
        if path.name in same:
            return path
        if len(same) == 1:
            return path.with_name(same[0])
        if any_suffix:
            stem = path.stem.lower()
            found = [ns[0] for key, ns in names.items() if Path(key).stem == stem and Path(key).suffix in _IMAGES]
            if len(found) == 1:
                return path.with_name(found[0])
        return None

    def nearby(self, path: Path) -> str:
        """What the folder of a missing ``path`` holds that looks like it, for the error message."""
        folder = path.parent
        if not folder.is_dir():
            return f"the folder {folder} does not exist"
        names = [n for ns in self.names(folder).values() for n in ns]
        deeper = [n for n in names if (folder / n).is_dir() and self.find(folder / n / path.name) is not None]
        if deeper:  # e.g. a zip unpacked into a folder of its own name: img_align_celeba/img_align_celeba/
            return f"looked for {path.name} in {folder}; it is one folder deeper, in {folder / deeper[0]}: point there"
        stem = path.stem.lower()
        alike = [n for n in names if n.lower().startswith(stem)]
        if alike:
            return f"looked for {path.name} in {folder}; found nearby: {', '.join(alike[:3])}"
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"looked for {path.name} in {folder}, which holds {len(names)} files{f' ({shown})' if names else ''}"


def resolve(paths: Sequence[Path], what: str, any_suffix: bool = False, folders: Folders | None = None) -> list[Path]:
    """``paths`` as they are on disk (see the module doc); a path not found stays as it is. A warning counts the
    files found under another name than given."""
    folders = folders or Folders()
    out, renamed = [], []
    for path in paths:
        found = folders.find(path, any_suffix)
        if found is not None and found != path:
            renamed.append((path, found))
        out.append(found or path)
    if renamed:
        logger.warning(
            "%d %s found under another name than given (e.g. %s for %s)",
            len(renamed),
            what,
            renamed[0][1].name,
            renamed[0][0].name,
        )
    return out


def missing_files(paths: Iterable[Path], folders: Folders | None = None) -> list[Path]:
    """The paths that do not exist; one directory listing per folder instead of a stat per file."""
    folders = folders or Folders()
    return [path for path in paths if not folders.exists(path)]


@contextmanager
def tolerate_missing() -> Iterator[list[Path]]:
    """Within this block datasets are built even when listed files are missing, and the list it gives collects
    them (for ``mobiletasks data check``, which reports every missing file instead of the first few)."""
    missing: list[Path] = []
    token = _MISSING.set(missing)
    try:
        yield missing
    finally:
        _MISSING.reset(token)


def raise_if_missing(paths: Iterable[Path], what: str, fix: str, folders: Folders | None = None) -> list[Path]:
    """FileNotFoundError listing the first few missing files, their number, where it looked and what it found;
    within :func:`tolerate_missing` the missing files are collected and returned instead."""
    folders = folders or Folders()
    missing = missing_files(paths, folders)
    sink = _MISSING.get()
    if missing and sink is None:
        shown = ", ".join(str(p) for p in missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
        raise FileNotFoundError(f"{len(missing)} {what} missing: {shown} ({folders.nearby(missing[0])}); {fix}")
    if sink is not None:
        sink.extend(missing)
    return missing


def read_text(path: Path, what: str, fix: str) -> str:
    """The text of ``path`` as UTF-8 (a byte-order mark is accepted); ValueError naming the file otherwise."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text ({err}); {fix}") from None


def find_files(
    paths: Sequence[Path], what: str, fix: str, any_suffix: bool = False, folders: Folders | None = None
) -> list[Path]:
    """``paths`` as they are on disk (:func:`resolve`), with :func:`raise_if_missing` on what is still missing;
    ``folders``: listings already read."""
    folders = folders or Folders()
    found = resolve(paths, what, any_suffix, folders)
    raise_if_missing(found, f"{what} are", fix, folders)
    return found
