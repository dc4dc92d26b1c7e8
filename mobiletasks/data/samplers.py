"""Which samples each process loads, so that training resumes exactly and evaluation counts every image once.

- :class:`TrainingSampler`: the shuffled order of an epoch and one augmentation seed per sample, both drawn from
  ``(seed, epoch)`` alone, split between the processes as ``DistributedSampler`` does. A sample's augmentation
  therefore depends neither on the DataLoader worker that loads it nor on what ran before, and
  :class:`ResumableDataLoader` saves the position in the epoch in Lightning's checkpoints: ``fit --ckpt_path
  last`` continues with the very batches an uninterrupted run would have seen, with ``num_workers`` 0 or more.
- :class:`EvaluationSampler`: ``DistributedSampler``'s split of an evaluation set without its repeats. To give
  every process the same number of batches, ``DistributedSampler`` pads the split with samples that another
  process also scores; here those places hold ``None``, which :class:`EvaluationSamples` turns into no sample
  (the collate functions drop ``None``), so each image is scored once and the processes stay in step.

Both are ``DistributedSampler`` subclasses, which Lightning leaves in place instead of injecting its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)

SampleKey = tuple[int, int]  # (dataset index, augmentation seed)


def default_seed() -> int:
    """The run's seed: ``lightning.seed_everything``'s (``PL_GLOBAL_SEED``, which LightningCLI always sets), else 0,
    as Lightning's own ``DistributedSampler``."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class TrainingSampler(DistributedSampler):
    """Yields ``(index, seed)``: the dataset index and the seed of that sample's augmentation.

    The epoch's order is a permutation drawn from ``seed + epoch`` (the same on every process), padded by
    repeating its start to a multiple of ``num_replicas``, of which process ``rank`` takes every
    ``num_replicas``-th place; each place has its own 31-bit seed from the same generator. ``start`` places of
    this process are skipped once (set by :class:`ResumableDataLoader` when a run resumes mid-epoch); changing
    the epoch forgets it.

    Args:
        dataset: the training set (only its length is used).
        num_replicas, rank: the processes and this one's rank (default: one process).
        seed: the seed of every epoch's order and augmentation (default: :func:`default_seed`).
        shuffle: permute the samples (False: in order, with seeds still drawn per place).
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int | None = None,
        shuffle: bool = True,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=shuffle, seed=default_seed() if seed is None else seed)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        n = len(self.dataset)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        seeds = torch.randint(2**31 - 1, (self.total_size,), generator=generator)
        if self.total_size > n:
            order = order.repeat(self.total_size // n + 1)[: self.total_size]
        places = range(self.rank, self.total_size, self.num_replicas)
        start, self.start = self.start, 0
        keys = list(zip(order[places].tolist(), seeds[places].tolist(), strict=True))
        return iter(keys[start:])


class EvaluationSampler(DistributedSampler):
    """``DistributedSampler``'s share of an evaluation set for process ``rank``, in order, with ``None`` where
    ``DistributedSampler`` would repeat a sample another process scores."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=False, drop_last=False)

    def __iter__(self) -> Iterator[int | None]:
        n = len(self.dataset)  # type: ignore[arg-type]
        return iter([p if p < n else None for p in range(self.rank, self.total_size, self.num_replicas)])


class EvaluationSamples(Dataset):
    """``dataset`` indexed by :class:`EvaluationSampler`: ``None`` (a place another process fills) gives None."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int | None) -> Any:
        return None if index is None else self.dataset[index]


class ResumableDataLoader(DataLoader):
    """A training DataLoader over a :class:`TrainingSampler` whose place in the epoch goes into Lightning's
    checkpoints (Lightning saves ``state_dict()`` and calls ``load_state_dict`` on resume), so that a run resumed
    mid-epoch skips the batches it already trained on, without loading them.

    The state is ``{"seed", "epoch", "batches", "num_replicas"}``: a resumed run keeps the interrupted run's seed
    even when it was started with another one (LightningCLI draws a new seed per run unless the config sets one).
    Resuming on another number of processes keeps the seed but starts the epoch over (a warning says so).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = 0  # batches of the current epoch handed out (or skipped on resume)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # a generator: the sampler is read at the first batch, after Lightning set the epoch
        start = self.sampler.start if isinstance(self.sampler, TrainingSampler) else 0
        self._batches = start // (self.batch_size or 1)
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The place in the epoch; ``{}`` with another sampler (Lightning's ``overfit_batches`` puts its own)."""
        sampler = self.sampler
        if not isinstance(sampler, TrainingSampler):
            return {}
        return {
            "seed": sampler.seed,
            "epoch": sampler.epoch,
            "batches": self._batches,
            "num_replicas": sampler.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        if not isinstance(sampler, TrainingSampler) or not state:
            return
        sampler.seed, sampler.epoch = int(state["seed"]), int(state["epoch"])
        if int(state["num_replicas"]) != sampler.num_replicas:
            if 0 < int(state["batches"]) < len(self) and sampler.rank == 0:
                log.warning(
                    "resuming on %d processes a run checkpointed mid-epoch on %d: the interrupted epoch starts over "
                    "(same seed)",
                    sampler.num_replicas,
                    state["num_replicas"],
                )
            return
        sampler.start = int(state["batches"]) * (self.batch_size or 1)
