"""One logger for the shipped configs: TensorBoard's event files and Lightning's ``metrics.csv`` in one folder per run.

Lightning's ``TensorBoardLogger`` and ``CSVLogger`` given as a list each pick their own next version: the first to
write takes ``version_N`` and the other then finds it taken and writes to ``version_N+1``, and a command-line
override such as ``--trainer.logger.init_args.name`` reaches only the last logger of a list. This logger is
Lightning's ``TensorBoardLogger`` that also writes, through a ``CSVLogger`` of the same ``save_dir``, ``name`` and
version, the CSV that Lightning's CSV logger writes, so figures stay greppable beside the curves.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["TensorBoardCSVLogger"]


class TensorBoardCSVLogger(TensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` (curves of every logged value, images, hyperparameters) that also writes
    ``metrics.csv`` (and ``hparams.yaml``) as Lightning's ``CSVLogger`` does, in the same
    ``<save_dir>/<name>/version_<N>`` folder.

    Args:
        save_dir, name, version, kwargs: as ``TensorBoardLogger``'s; ``version`` None takes the next free
            ``version_<N>`` under ``<save_dir>/<name>``, for both files.
        default_hp_metric: TensorBoard's placeholder ``hp_metric`` of -1 (off: it is no metric of the run, and
            would be a row of its own in ``metrics.csv``).

    Example (YAML)::

        trainer:
          logger:
            class_path: mobiletasks.tasks.TensorBoardCSVLogger
            init_args: {save_dir: runs, name: quickstart}

    Then ``tensorboard --logdir runs`` shows the curves and the validation pictures, and
    ``runs/quickstart/version_0/metrics.csv`` holds the same numbers.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        default_hp_metric: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(save_dir, name=name, version=version, default_hp_metric=default_hp_metric, **kwargs)
        self._csv: CSVLogger | None = None

    @property
    def csv(self) -> CSVLogger:
        """The CSV logger of this run's folder (made on first use, when the version is known)."""
        if self._csv is None:
            self._csv = CSVLogger(self.save_dir, name=self.name, version=self.version)
        return self._csv

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """TensorBoard's ``SummaryWriter``; the CSV writer is made first, as it warns about a folder in use."""
        _ = self.csv.experiment
        return super().experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self.csv.log_hyperparams(params)
        super().log_hyperparams(params, *args, **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.csv.log_metrics(dict(metrics), step)
        super().log_metrics(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        self.csv.save()
        super().save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.csv.finalize(status)
        super().finalize(status)
