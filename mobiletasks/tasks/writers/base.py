"""What the prediction writers share: atomic JSON, the split's file names, results gathered in order, output names."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import lightning as L

from ...common import replace_atomically
from ...data.base import HasSplits
from ...evaluation.distributed import gather

log = logging.getLogger(__name__)
T = TypeVar("T")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data)
    replace_atomically(path, lambda name: Path(name).write_text(text))


def split_file_names(trainer: L.Trainer, split: str = "predict") -> list[str]:
    """The file names of a split of the trainer's data module, in dataset order ([] when it does not say)."""
    datamodule = getattr(trainer, "datamodule", None)
    if not isinstance(datamodule, HasSplits):
        return []
    dataset = datamodule.dataset(split)
    names = getattr(dataset, "file_names", None)
    if names is None:
        names = [getattr(r, "file_name", None) for r in getattr(dataset, "records", [])]
    return [str(n) for n in names] if all(n is not None for n in names) else []


def gather_in_order(
    records: list[T],
    order: Sequence[str],
    file_name: Callable[[T], str] = lambda r: r["file_name"],  # type: ignore[index]
) -> list[T]:
    """The records of every process, in the order of ``order``'s file names (stable; records of names not in
    ``order`` last); ``file_name`` reads a record's (default: its ``"file_name"`` key). In one process:
    ``records``, unchanged."""
    everyone = [r for rank in gather(records) for r in rank]
    if len(everyone) == len(records):
        return records
    place = {name: k for k, name in reversed(list(enumerate(order)))}
    return sorted(everyone, key=lambda r: place.get(str(file_name(r)), len(place)))


class OutputNames:
    """One output file per input: the input's path relative to its folder, with ``suffix``, so that
    ``cam1/0001.jpg`` and ``cam2/0001.jpg`` get ``cam1/0001.png`` and ``cam2/0001.png``. Where two inputs would
    still share a name (``a.jpg`` and ``a.png``), the later one keeps its own suffix (``a.jpg.png``), then a
    number. Parts that would leave the output folder (absolute paths, ``..``) are dropped.

    ``file_names``: every input, in order, named up front, so that each process of a distributed run gives an
    input the name one process would; ``place(file_name)`` returns its position among them too.
    """

    def __init__(self, suffix: str = ".png", file_names: Sequence[str] = ()) -> None:
        self.suffix = suffix
        self.taken: set[str] = set()
        self.planned: dict[str, list[tuple[int, str]]] = {}
        for k, name in enumerate(file_names):
            self.planned.setdefault(name, []).append((k, self._new(name)))

    def place(self, file_name: str) -> tuple[int | None, str]:
        """The input's position among ``file_names`` (None: not among them) and its output name."""
        planned = self.planned.get(file_name)
        return planned.pop(0) if planned else (None, self._new(file_name))

    def __call__(self, file_name: str) -> str:
        return self.place(file_name)[1]

    def _new(self, file_name: str) -> str:
        parts = [p for p in PurePosixPath(str(file_name).replace("\\", "/")).parts if p not in ("/", ".", "..")]
        relative = PurePosixPath(*parts) if parts else PurePosixPath("image")
        candidates = [relative.with_suffix(self.suffix).as_posix(), relative.as_posix() + self.suffix]
        name = next((c for c in candidates if c not in self.taken), None)
        k = 1
        while name is None or name in self.taken:
            name = f"{relative.as_posix()}.{k}{self.suffix}"
            k += 1
        self.taken.add(name)
        return name
