"""What every data module shares: batch-size checks, datasets per split built on first use, one loader
factory. Subclasses set ``collate_fn`` and the per-split transforms, and implement ``class_names``,
``make_dataset(split)``, ``folder_dataset(folder)`` (for ``predict_images``) and ``evaluator(split)``.

What the tasks read of a data module is written as Protocols: :class:`HasSplits` and :class:`HasEvaluator`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
from torch.utils.data import DataLoader, Dataset

from mobiletasks.common import PathLike
from mobiletasks.data.samplers import EvaluationSampler, EvaluationSamples, ResumableDataLoader, TrainingSampler
from mobiletasks.data.skips import ReplaceUnreadable

SPLITS = ("train", "val", "test", "predict")


@runtime_checkable
class HasSplits(Protocol):
    """A data module that gives the dataset of a split (``"train"``, ``"val"``, ``"test"``, ``"predict"``), built on
    first use: what the tasks count a split's images by and the prediction writers read file names from."""

    def dataset(self, split: str) -> Dataset: ...


@runtime_checkable
class HasEvaluator(Protocol):
    """A data module that makes a fresh evaluator of a split (``update``/``compute``/``reset``, the split's official
    metric: COCO mAP, VOC mAP, mIoU, top-k, attribute mAP), which the tasks feed."""

    def evaluator(self, split: str) -> Any: ...


_STAGES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


def plain_paths(hparams: MutableMapping[str, Any]) -> None:
    """Turn ``Path`` values of saved hyperparameters into strings, so a checkpoint holds plain data and loads with
    ``torch.load(..., weights_only=True)`` (a ``PosixPath`` is a pickled object it refuses)."""
    for key, value in hparams.items():
        if isinstance(value, Path):
            hparams[key] = str(value)
        elif isinstance(value, list | tuple) and any(isinstance(v, Path) for v in value):
            hparams[key] = type(value)(str(v) if isinstance(v, Path) else v for v in value)


def default_num_workers(processes: int = 1) -> int:
    """DataLoader workers per process when a data module's ``num_workers`` is None: the CPUs this process may use
    (``os.sched_getaffinity``), shared among the ``processes`` of the machine, less one for each process itself;
    at most 8 (decoding and augmenting SSD or DeepLab samples runs at 250+ images/s per worker: 8 workers feed a GPU
    at 2000 images/s), at least 0 (load in the process itself).

    Example:
        >>> 0 <= default_num_workers() <= 8
        True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus // max(1, processes) - 1))


def check_split(split: str, choices: Sequence[str] = SPLITS) -> None:
    if split not in choices:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(choices)}")


class SplitDataModule(L.LightningDataModule):
    """Splits "train" (augmented by ``train_aug``), "val", "test" and "predict" (``val_aug``, ...; None: the
    original image); "predict" reads ``predict_images`` (any folder of images) when it is set."""

    collate_fn: Callable[[list[Any]], Any]

    def __init__(
        self,
        image_size: int,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int | None,
        predict_images: PathLike | None,
    ) -> None:
        super().__init__()
        sizes = {"image_size": image_size, "batch_size": batch_size, "eval_batch_size": eval_batch_size}
        for name, value in sizes.items():
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be 0 (load in the main process) or more, got {num_workers}")
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.predict_images = predict_images
        self.train_aug: Any = None
        self.val_aug: Any = None
        self.test_aug: Any = None
        self.predict_aug: Any = None
        self.datasets: dict[str, Dataset] = {}

    def save_hyperparameters(self, *args: Any, frame: Any = None, **kwargs: Any) -> None:
        """Lightning's, with ``Path`` arguments saved as strings (:func:`plain_paths`)."""
        super().save_hyperparameters(*args, frame=frame or inspect.currentframe().f_back, **kwargs)  # type: ignore[union-attr]
        plain_paths(self.hparams)

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def folder_dataset(self, folder: PathLike) -> Dataset:
        raise NotImplementedError

    def split_transform(self, split: str) -> Any:
        """The transform attribute of ``split``: ``train_aug``, ``val_aug``, ``test_aug``, ``predict_aug``."""
        return getattr(self, f"{split}_aug")

    def setup(self, stage: str) -> None:
        """Build the datasets the stage needs ("fit": train and val)."""
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(_STAGES)}")
        for split in _STAGES[stage]:
            self.dataset(split)

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split``, built on first use."""
        check_split(split)
        if split not in self.datasets:
            if split == "predict" and self.predict_images is not None:
                self.datasets[split] = self.folder_dataset(self.predict_images)
            else:
                self.datasets[split] = self.make_dataset(split)
        return self.datasets[split]

    def _processes(self) -> tuple[int, int]:
        """The number of processes and this one's rank (one process outside a Trainer)."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def workers(self) -> int:
        """The loaders' worker processes: ``num_workers``, or where it is None :func:`default_num_workers` for the
        trainer's processes on this machine."""
        if self.num_workers is not None:
            return self.num_workers
        trainer = self.trainer
        return default_num_workers(trainer.num_devices if trainer is not None else 1)

    def _on_gpu(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _dataloader(self, split: str) -> DataLoader:
        """Training: :class:`~mobiletasks.data.samplers.TrainingSampler` order and augmentation seeds, unreadable
        samples replaced, the place in the epoch saved in checkpoints. Evaluation and prediction: in order, and
        under several processes each sample on one process only (:class:`EvaluationSampler`). Workers persist
        between epochs; batches go to pinned memory when the trainer runs on a GPU."""
        dataset = self.dataset(split)
        workers = self.workers()
        options: dict[str, Any] = {
            "num_workers": workers,
            "collate_fn": type(self).collate_fn,
            "persistent_workers": workers > 0,
            "pin_memory": self._on_gpu(),
        }
        replicas, rank = self._processes()
        if split == "train":
            order = TrainingSampler(dataset, replicas, rank)
            return ResumableDataLoader(ReplaceUnreadable(dataset), batch_size=self.batch_size, sampler=order, **options)  # type: ignore[arg-type]
        if replicas > 1:
            share = EvaluationSampler(dataset, replicas, rank)
            return DataLoader(EvaluationSamples(dataset), batch_size=self.eval_batch_size, sampler=share, **options)
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **options)

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train")

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._dataloader("predict")
