"""Checkpoints: a ModelCheckpoint the user configures is kept as written, the task's default checkpointing
(``TaskCheckpoint``) applies otherwise, and ``AtomicCheckpointIO`` leaves the previous checkpoint whole when a
save is interrupted. The CLI runs use the classification quickstart on ten generated images."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.strategies import SingleDeviceStrategy

from mobiletasks.cli import main
from mobiletasks.cli.lightning import MobileTasksCLI
from mobiletasks.tasks import AtomicCheckpointIO, TaskCheckpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "classification" / "quickstart.yaml"
RUN = "classification_quickstart"  # the config's logger name
TINY = ["--data.init_args.num_images", "10", "--data.init_args.image_size", "32", "--data.init_args.num_workers", "0"]
TINY += ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
# two epochs of one training batch (of 4: "1" would read as 1.0, all of them) and the one validation batch
SHORT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "0.25", "--trainer.limit_val_batches", "1"]
SHORT += ["--trainer.check_val_every_n_epoch", "1", "--trainer.num_sanity_val_steps", "0"]
SHORT += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(*extra: str) -> None:
    assert main(["fit", "--config", str(CONFIG), *TINY, *SHORT, *extra]) == 0


def cli(*extra: str) -> MobileTasksCLI:
    """The CLI with its classes built and nothing run: its trainer's callbacks and checkpoint IO to inspect."""
    return MobileTasksCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        args=["--config", str(CONFIG), *TINY, *extra],
        run=False,
    )


def checkpoint_callbacks(path: Path) -> list[str]:
    """The state keys of the checkpoint callbacks a checkpoint was saved with."""
    states = torch.load(path, weights_only=True)["callbacks"]
    return [key for key in states if "Checkpoint{" in key]


def test_default_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a checkpoint callback: the best by the task's metric and the last, in <save_dir>/<name>/checkpoints."""
    monkeypatch.chdir(tmp_path)
    fit()
    folder = tmp_path / "runs" / RUN / "checkpoints"
    best, last = sorted(p.name for p in folder.iterdir())
    assert re.fullmatch(r"best-version_0-epoch=00[01]\.ckpt", best) and last == "last.ckpt"
    (key,) = checkpoint_callbacks(folder / last)
    assert key.startswith("TaskCheckpoint{'monitor': 'val/top1', 'mode': 'max'")
    assert torch.load(folder / last, weights_only=True)["epoch"] == 1  # the final epoch, also where it is not best
    fit()  # a second run: the same folder, last.ckpt written over, each run's best carries its version
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 3 and names[0] == best and names[1].startswith("best-version_1-") and names[2] == last


def test_resume_from_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit --ckpt_path last`` finds the experiment's last.ckpt (Lightning looks before any callback's setup)."""
    monkeypatch.chdir(tmp_path)
    fit()
    fit("--trainer.max_epochs", "3", "--ckpt_path", "last")
    lines = (tmp_path / "runs" / RUN / "version_1" / "metrics.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in lines[1:]} == {"2"}  # only the third epoch: the first two were restored
    assert torch.load(tmp_path / "runs" / RUN / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_user_checkpoint_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ModelCheckpoint in trainer.callbacks decides alone: its folder, names, metric; no TaskCheckpoint added."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    callback = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "dirpath": str(mine),
            "filename": "mine-{epoch}-{step}",
            "monitor": "val/top5",
            "mode": "min",
            "save_top_k": 2,
        },
    }
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    fit("--config", str(config))
    assert sorted(p.name for p in mine.iterdir()) == ["mine-epoch=0-step=1.ckpt", "mine-epoch=1-step=2.ckpt"]
    (key,) = checkpoint_callbacks(mine / "mine-epoch=1-step=2.ckpt")
    assert key.startswith("ModelCheckpoint{'monitor': 'val/top5', 'mode': 'min'")
    assert not (tmp_path / "runs" / RUN / "checkpoints").exists()


def test_checkpointing_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fit("--trainer.enable_checkpointing", "false")
    assert (tmp_path / "runs" / RUN / "version_0" / "metrics.csv").is_file()  # it trained
    assert not list(tmp_path.rglob("*.ckpt"))


def test_trainer_of_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's trainer: the task's checkpoint and the atomic saves by default; configured ones kept instead."""
    monkeypatch.chdir(tmp_path)
    trainer = cli().trainer
    (checkpoint,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]
    assert type(checkpoint) is TaskCheckpoint and (checkpoint.monitor, checkpoint.mode) == ("val/top1", "max")
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    plain = cli("--trainer.plugins", "lightning.pytorch.plugins.TorchCheckpointIO").trainer
    assert type(plain.strategy.checkpoint_io) is TorchCheckpointIO
    strategy = {
        "class_path": "lightning.pytorch.strategies.SingleDeviceStrategy",
        "init_args": {"device": "cpu", "checkpoint_io": {"class_path": "lightning.pytorch.plugins.TorchCheckpointIO"}},
    }
    config = tmp_path / "strategy.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"strategy": strategy}}))
    # Lightning refuses a CheckpointIO in both the strategy and the plugins: none is added
    assert type(cli("--config", str(config)).trainer.strategy.checkpoint_io) is TorchCheckpointIO
    off = cli("--trainer.enable_checkpointing", "false").trainer
    assert not [c for c in off.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]


def test_lightning_private_api() -> None:
    """MobileTasksCLI overrides LightningCLI._instantiate_trainer and reads Strategy._checkpoint_io, as in lightning
    2.6: an upgrade that changes them fails here, not in a user's run."""
    assert list(inspect.signature(LightningCLI._instantiate_trainer).parameters) == ["self", "config", "callbacks"]
    io = TorchCheckpointIO()
    assert SingleDeviceStrategy("cpu", checkpoint_io=io)._checkpoint_io is io


class Scored(L.LightningModule):
    monitor = "val/score"
    mode = "max"


class Worsening(Scored):
    """A task whose score is best in the first epoch and worse in each one after it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/score", -float(self.current_epoch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_plain_trainer_last_is_the_latest(tmp_path: Path) -> None:
    """With a plain Trainer, added by hand: the best epoch and the latest one (Lightning 2.6 alone would write
    last.ckpt only with a new best, leaving it at epoch 0 here)."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(4, 2)), batch_size=2)
    logger = CSVLogger(tmp_path, name="exp")
    trainer = L.Trainer(
        max_epochs=3,
        logger=logger,
        callbacks=[TaskCheckpoint()],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Worsening(), train_dataloaders=data, val_dataloaders=data)
    folder = tmp_path / "exp" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best-version_0-epoch=000.ckpt", "last.ckpt"]
    last = torch.load(folder / "last.ckpt", weights_only=True)
    (state,) = last["callbacks"].values()
    assert last["epoch"] == 2 and state["best_model_path"] == str(folder / "best-version_0-epoch=000.ckpt")


@pytest.mark.parametrize(("version", "name"), [(3, "best-version_3-{epoch:03d}"), ("a", "best-a-{epoch:03d}")])
def test_task_checkpoint_setup(version: int | str, name: str, tmp_path: Path) -> None:
    """A plain Trainer's TaskCheckpoint takes the metric from the task and the folder from the logger."""
    checkpoint = TaskCheckpoint()
    logger = CSVLogger(tmp_path / "runs", name="exp", version=version)
    trainer = L.Trainer(callbacks=[checkpoint], logger=logger, enable_progress_bar=False)
    checkpoint.setup(trainer, Scored(), "fit")
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.kth_value.item()) == ("val/score", "max", -float("inf"))
    assert checkpoint.dirpath == os.path.realpath(tmp_path / "runs" / "exp" / "checkpoints")
    assert checkpoint.filename == name and checkpoint.save_last is True


def test_task_checkpoint_without_logger_or_metric(tmp_path: Path) -> None:
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, enable_progress_bar=False)
    checkpoint = TaskCheckpoint(monitor="val/loss")  # the mode from the task
    checkpoint.setup(trainer, Scored(), "fit")
    assert (checkpoint.monitor, checkpoint.mode) == ("val/loss", "max")
    assert checkpoint.dirpath == str(tmp_path / "checkpoints") and checkpoint.filename == "best-{epoch:03d}"
    with pytest.raises(ValueError, match=r"LightningModule has none: pass them, e\.g\. TaskCheckpoint\(monitor="):
        TaskCheckpoint().setup(trainer, L.LightningModule(), "fit")


def write_some(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> list[Path]:
    """torch.save that writes half of the checkpoint, then fails with ``error``; returns where it wrote."""
    save = torch.save
    written: list[Path] = []

    def half(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        save(obj, f, *args, **kwargs)
        size = f.tell()
        f.seek(size // 2)
        f.truncate()
        written.append(Path(f.name))
        raise error

    monkeypatch.setattr(torch, "save", half)
    return written


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_previous(
    error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "weight": torch.arange(1000.0)}, path)
    written = write_some(monkeypatch, error)
    with pytest.raises(type(error)):
        io.save_checkpoint({"step": 2, "weight": torch.zeros(1000)}, path)
    (partial,) = written
    assert partial.parent == path.parent and partial != path  # the half-written bytes went next to it
    first = torch.load(path, weights_only=True)
    assert first["step"] == 1 and torch.equal(first["weight"], torch.arange(1000.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # the temporary file is gone
    monkeypatch.undo()
    io.save_checkpoint({"step": 3, "weight": torch.ones(3)}, path)  # a save that completes replaces it
    assert torch.load(path, weights_only=True)["step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_killed_save_keeps_the_previous(tmp_path: Path) -> None:
    """A process killed mid-write (nothing runs after SIGKILL) leaves the previous checkpoint whole."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    script = f"""
        import os, signal, torch
        from mobiletasks.tasks import AtomicCheckpointIO
        def half(obj, f):
            f.write(b"PK" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = half
        AtomicCheckpointIO().save_checkpoint({{"step": 2}}, {str(path)!r})
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()
    assert torch.load(path, weights_only=True) == {"step": 1}
    (left,) = [p for p in tmp_path.iterdir() if p != path]  # the killed save's file, which Lightning ignores
    assert left.name.startswith(".last.ckpt.") and left.suffix == ".tmp"


@pytest.mark.parametrize("url", ["file://{tmp}/a/last.ckpt", "memory://{name}/last.ckpt"])
def test_urls(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """file:// URLs are saved atomically; other fsspec URLs by TorchCheckpointIO's save."""
    monkeypatch.chdir(tmp_path)
    io, url = AtomicCheckpointIO(), url.format(tmp=tmp_path, name=tmp_path.name)
    io.save_checkpoint({"step": 1}, url)
    io.save_checkpoint({"step": 2}, url)
    assert io.load_checkpoint(url, weights_only=True) == {"step": 2}
    local = [p.name for p in tmp_path.rglob("*")]
    assert local == (["a", "last.ckpt"] if url.startswith("file://") else [])  # no local "memory:" folder
