"""Samples a dataset could not load, counted across DataLoader workers, and how each split treats them.

A dataset's ``__getitem__`` returns None for a sample it cannot load (an image that cannot be decoded, of
another size than its annotation or mask says): :class:`SkipLog` counts it in memory shared with the workers,
keeps the first few file names with the reason, and warns once per file. What happens next depends on the split:

- training: :class:`ReplaceUnreadable` loads the next readable sample in its place, so batches keep their size
  (a batch of one image, or none, would break BatchNorm and distributed training);
- evaluation: the sample is left out of the batch, and the task fails at the end of the split unless the user
  opted into scoring without it (``skip_unreadable``), so a metric never quietly covers fewer images;
- prediction: the image gets no output, and a warning says which.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
from typing import Any, Protocol

from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

_TEXT_BYTES = 2048  # room for the first few "file: reason" lines


def _is_plain_copy() -> bool:
    """True when an object is copied (``copy.deepcopy``, ``pickle``), False when it goes to a starting worker."""
    return multiprocessing.context.get_spawning_popen() is None


class SharedCounter:
    """An integer that DataLoader worker processes add to and the main process reads.

    Copies made outside process start (``copy.deepcopy``, ``pickle``) get a private counter with the value.
    """

    def __init__(self, value: int = 0) -> None:
        self._shared = _shared_int(value)

    @property
    def value(self) -> int:
        return int(self._shared.value)

    def add(self, n: int = 1) -> None:
        with self._shared.get_lock():
            self._shared.value += n

    def __getstate__(self) -> dict[str, Any]:
        if _is_plain_copy():
            return {"value": self.value}
        return {"shared": self._shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._shared = state["shared"] if "shared" in state else _shared_int(state["value"])


def _shared_int(value: int) -> Any:
    # a lock made in the spawn context can also go to forked and forkserver workers (not the other way round)
    return multiprocessing.get_context("spawn").Value("q", value)


class SkipLog:
    """How many times samples were skipped (all workers) and the first few ``file: reason`` lines.

    ``add`` warns once per file and process; every call is counted.
    """

    def __init__(self) -> None:
        self._count = SharedCounter()
        self._text: Any = multiprocessing.get_context("spawn").Array("c", _TEXT_BYTES)
        self._warned: set[str] = set()

    @property
    def count(self) -> int:
        return self._count.value

    def add(self, file_name: str, reason: str) -> None:
        self._count.add()
        if file_name in self._warned:
            return
        self._warned.add(file_name)
        logger.warning("skipping %s: %s", file_name, reason)
        line = f"{file_name}: {reason}\n".encode(errors="replace")
        with self._text.get_lock():
            used = self._text.value
            if len(used) + len(line) < _TEXT_BYTES and line not in used:
                self._text.value = used + line

    def examples(self) -> list[str]:
        """The first skipped files, each as ``"file: reason"``."""
        return self._text.value.decode(errors="replace").splitlines()

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {"count": self._count, "warned": set()}
        state["text"] = self._text.value if _is_plain_copy() else self._text
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._count, self._warned = state["count"], state["warned"]
        text = state["text"]
        if isinstance(text, bytes):
            self._text = multiprocessing.get_context("spawn").Array("c", _TEXT_BYTES)
            self._text.value = text
        else:
            self._text = text


class SkippingDataset(Protocol):
    """A dataset whose ``__getitem__`` returns None for a sample it skipped, counted in ``skip_log``."""

    skip_log: SkipLog

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...


class ReplaceUnreadable(Dataset):
    """``dataset`` for training: indexed by :class:`~mobiletasks.data.samplers.TrainingSampler`'s ``(index,
    seed)`` keys (or plain indices), with the sample's augmentation seeded by its key and every skipped sample
    replaced by the next one that loads, with the same seed.

    Raises:
        RuntimeError: ``max_tries`` samples in a row could not be loaded (the data is broken, not a file or
            two): the message names some and points to ``mobiletasks data check``.
    """

    def __init__(self, dataset: SkippingDataset, max_tries: int = 32) -> None:
        self.dataset, self.max_tries = dataset, max_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        transform = getattr(self.dataset, "transform", None)
        if seed is not None and transform is not None and hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)
        n = len(self.dataset)
        for k in range(min(self.max_tries, n)):
            sample = self.dataset[(index + k) % n]
            if sample is not None:
                return sample
        log = getattr(self.dataset, "skip_log", None)
        examples = "; ".join(log.examples()[:3]) if log is not None else ""
        raise RuntimeError(
            f"{min(self.max_tries, n)} training samples in a row could not be loaded (e.g. {examples}); "
            "run `mobiletasks data check --config <your config>` to list every bad file, then fix or remove them"
        )
