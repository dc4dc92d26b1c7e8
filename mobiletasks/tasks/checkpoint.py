"""Checkpoints of runs that last: the task's default checkpointing, and saves that an interruption cannot corrupt.

:class:`TaskCheckpoint` keeps the best checkpoint by the task's metric and the last one, in one folder per
experiment. ``mobiletasks fit`` adds it only where the config has no ``ModelCheckpoint`` of its own, so a
checkpoint callback the user configures is kept as written (torchgeo dropped its ``configure_callbacks`` because
a task-made callback replaced the user's). :class:`AtomicCheckpointIO` writes each checkpoint next to its target
and moves it into place in one step: a run killed while saving ``last.ckpt`` leaves the previous one loadable.

Example:
    >>> import lightning as L
    >>> trainer = L.Trainer(callbacks=[TaskCheckpoint()], plugins=[AtomicCheckpointIO()], logger=False)
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import secrets
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import fsspec.core
import fsspec.utils
import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins import TorchCheckpointIO

from ..compat import CHECKPOINT_FIND_LAST, overrides_private

Mode = Literal["min", "max"]


@runtime_checkable
class MonitoredTask(Protocol):
    """A LightningModule that names the metric of its best checkpoint, as every :class:`~mobiletasks.tasks.BaseTask`
    does (``monitor = "val/map"``, ``mode = "max"``)."""

    monitor: str
    mode: Mode


def run_tag(logger: Logger | None) -> str:
    """The part of a checkpoint name that tells the runs of one experiment apart: ``version_3-`` for a logger's
    version 3, the version itself when it is a string, nothing without a logger or with version ``""``."""
    if logger is None or logger.save_dir is None or logger.version == "":
        return ""
    version = logger.version
    return (version if isinstance(version, str) else f"version_{version}") + "-"


@overrides_private(CHECKPOINT_FIND_LAST)
class TaskCheckpoint(ModelCheckpoint):
    """The best checkpoint by the task's metric and the last one, in ``<logger.save_dir>/<logger.name>/checkpoints``.

    One folder holds all runs of an experiment, so ``last.ckpt`` is always the latest run's, and each run's best
    checkpoint carries its log version (``best-version_3-epoch=011.ckpt``); without a logger, Lightning's default
    folder. ``last.ckpt`` is written after every validation and at the end of every training epoch, also where
    the metric did not improve (since lightning 2.6 a ``ModelCheckpoint`` writes it only together with a best
    checkpoint) and in epochs without validation, so a killed run loses at most one epoch. ``fit --ckpt_path
    last`` resumes from this folder's ``last.ckpt``.

    ``mobiletasks fit`` adds this callback, with the task's ``monitor`` and ``mode``, unless the config has a
    ``ModelCheckpoint`` of its own or sets ``enable_checkpointing: false``. A plain ``L.Trainer`` keeps
    Lightning's defaults: pass ``callbacks=[TaskCheckpoint()]`` and ``plugins=[AtomicCheckpointIO()]`` for the
    behaviour of the command line.

    Args:
        monitor: the metric that picks the best checkpoint; None: the task's ``monitor`` (its class attribute).
        mode: whether the best value of ``monitor`` is the smallest (``min``) or the largest (``max``); None: the
            task's ``mode``.
        dirpath: the folder of the checkpoints; None: ``<logger.save_dir>/<logger.name>/checkpoints``.
        filename: the name of the best checkpoints, in ``ModelCheckpoint``'s format; None:
            ``best-<version>-{epoch:03d}``.
        save_last, enable_version_counter, kwargs: as ``ModelCheckpoint``'s (``last.ckpt`` is written over, not
            numbered).

    Raises:
        ValueError: at setup, when ``monitor`` or ``mode`` is None and the LightningModule names no metric
            (it is not a ``mobiletasks`` task), or names a ``mode`` other than ``min``/``max``.
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: Mode | None = None,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        save_last: bool | Literal["link"] | None = True,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode or "min",
            save_last=save_last,
            enable_version_counter=enable_version_counter,
            **kwargs,
        )
        self._monitor_from_task = monitor is None
        self._mode_from_task = mode is None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._monitor_from_task or self._mode_from_task:
            self._take_task_metric(pl_module)
        self._experiment_folder(trainer)
        if self.filename is None:
            # rank 0's name, as Lightning broadcasts rank 0's dirpath: each process computes the version itself
            self.filename = trainer.strategy.broadcast(f"best-{run_tag(trainer.logger)}{{epoch:03d}}")
        super().setup(trainer, pl_module, stage)

    def _experiment_folder(self, trainer: L.Trainer) -> None:
        """``dirpath`` where it is None: ``<logger.save_dir>/<logger.name>/checkpoints``, the same on every process."""
        logger = trainer.logger
        if self.dirpath is None and logger is not None and logger.save_dir is not None:
            dirpath = os.path.join(logger.save_dir, str(logger.name), "checkpoints")
            # local folders absolute, as ModelCheckpoint makes them: a resumed run then finds its best checkpoint
            local = fsspec.utils.get_protocol(dirpath) == "file"
            self.dirpath = os.path.realpath(os.path.expanduser(dirpath)) if local else dirpath

    def _take_task_metric(self, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, MonitoredTask):
            raise ValueError(
                f"TaskCheckpoint takes the metric of the best checkpoint from the task's `monitor` and `mode`, and "
                f"{type(pl_module).__name__} has none: pass them, e.g. TaskCheckpoint(monitor='val/loss', mode='min')"
            )
        if self._monitor_from_task:
            self.monitor = pl_module.monitor
        if self._mode_from_task:
            if pl_module.mode not in ("min", "max"):
                raise ValueError(
                    f"{type(pl_module).__name__}.mode is {pl_module.mode!r}: set it to 'min' or 'max', or pass "
                    "TaskCheckpoint(mode=...)"
                )
            # the worst value, as ModelCheckpoint sets it up for its mode in __init__
            self.mode = pl_module.mode
            self.kth_value = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        self._monitor_from_task = self._mode_from_task = False  # once: a later setup keeps the scores so far

    # ModelCheckpoint's private methods below are lightning 2.6's: mobiletasks.compat records them, and
    # tests/test_compat.py checks them against the installed Lightning
    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        # ckpt_path="last" is looked up before any callback's setup: in this experiment's folder, not in Lightning's
        # <save_dir>/<name>/<version>/checkpoints of a version that has just begun
        self._experiment_folder(trainer)
        return super()._find_last_checkpoints(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # every epoch, also those without validation (configs validate every 2 to 10 epochs): a killed run loses
        # at most one epoch
        self._save_last_anyway(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def _save_last_anyway(self, trainer: L.Trainer) -> None:
        """``last.ckpt`` where ModelCheckpoint's hook saved nothing at this step (no new best checkpoint)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skipped: this step is saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file next to its target, then moves it into place in one step.

    Lightning's save (``TorchCheckpointIO``) stages the checkpoint in the system's temporary folder and moves it
    to the target; where that folder is on another file system (a tmpfs ``/tmp``, runs on a mounted data disk)
    the move copies into the target in place, so a run killed while saving ``last.ckpt`` leaves a truncated file
    and nothing to resume from. Here the bytes go to ``.<name>.<random>.tmp`` in the checkpoint's own folder,
    are flushed to disk (``fsync``) and replace the target with ``os.replace``, one rename: the target is always
    either the previous checkpoint or the new one, whole. A save that fails removes its temporary file; a killed
    process leaves it behind (the name does not end in ``.ckpt``, so Lightning never takes it for a checkpoint).
    Remote paths (``s3://``, any fsspec URL but local files) and ``storage_options`` go to
    ``TorchCheckpointIO``'s save.

    Raises:
        OSError: the folder cannot be created or written, or the disk is full; the previous checkpoint stays.
        TypeError: ``storage_options`` is given, as ``TorchCheckpointIO`` raises.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        fs, target = fsspec.core.url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        folder, name = os.path.split(target)
        os.makedirs(folder or ".", exist_ok=True)
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        file = open(temporary, "xb")  # noqa: SIM115 (closed below; outside the try: a name clash removes nothing)
        try:
            with file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:  # KeyboardInterrupt too: the temporary file goes, the previous checkpoint stays
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise


def check_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``; a clear error unless it is a Lightning one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass --ckpt_path the .ckpt file of a run "
            "(its checkpoints/ folder holds last.ckpt and the best one)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"checkpoint {path} cannot be read: it is truncated, corrupt or not a checkpoint saved by mobiletasks "
            f"({type(err).__name__}: {reason}). Pass another one, e.g. the run's last.ckpt"
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(
            f"checkpoint {path} holds no 'state_dict': it is not a Lightning checkpoint. For weights of a bare "
            "model use the task's `pretrained` argument instead of --ckpt_path"
        )
    return checkpoint


def checkpoint_model(checkpoint: dict[str, Any], class_path: str | None) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of the task a checkpoint was saved from (its saved hyperparameters, those
    that the class still takes); None when it saved none. ``class_path``: the class when the checkpoint does not
    name one."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None) or class_path
    if not class_path or not hparams:
        return None
    module, _, name = str(class_path).rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError):
        return None  # a class this installation lacks: the config names the task, as without a checkpoint
    init_args = {k: v for k, v in hparams.items() if k in parameters}
    return {"class_path": class_path, "init_args": init_args}


def load_task(path: str | Path) -> tuple[L.LightningModule, dict[str, Any]]:
    """The task a checkpoint was saved from, with its weights, in eval mode on the CPU, and the checkpoint's
    deploy record (``BaseTask.deploy_record``: ``kind``, ``class_names``, ...; older checkpoints: ``kind`` only).

    The task is rebuilt from its saved hyperparameters without its ``pretrained`` / ``pretrained_backbone`` files
    (the checkpoint holds the trained weights), so it loads where those files are absent.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable checkpoint, or one that names no mobiletasks task.
    """
    checkpoint = check_checkpoint(path)
    record = dict(checkpoint.get("mobiletasks") or {})
    spec = checkpoint_model(checkpoint, record.get("task_class"))
    if spec is None:
        raise ValueError(
            f"checkpoint {path} names no task class in its hyper_parameters: it was not saved by a mobiletasks task "
            "run (mobiletasks fit or a Trainer fitting a mobiletasks task); pass the .ckpt of such a run"
        )
    module, _, name = str(spec["class_path"]).rpartition(".")
    task_class = getattr(importlib.import_module(module), name)
    init_args = dict(spec["init_args"])
    for key in ("pretrained", "pretrained_backbone"):
        if key in init_args:
            init_args[key] = None
    task: L.LightningModule = task_class(**init_args)
    try:
        task.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path}: its weights do not fit {name}({init_args}): {err}") from err
    record.setdefault("kind", getattr(task_class, "kind", "task"))
    return task.eval(), record
