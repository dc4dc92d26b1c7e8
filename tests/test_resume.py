"""Long runs: ``fit --ckpt_path last`` after an interruption ends with the weights of an uninterrupted run, and a
non-finite loss stops the run (naming the batch) or skips its update, as the task's ``nonfinite_loss`` says."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor

from mobiletasks.data.synthetic import ShapesClassificationDataModule
from mobiletasks.tasks import ClassificationTask
from mobiletasks.tasks.safety import first_nonfinite

SMALL = {"model": "classifier", "model_kwargs": {"backbone_kwargs": {"width_mult": 0.25}, "dropout": 0.2}}


def data(root: Path, num_workers: int) -> ShapesClassificationDataModule:
    # 32 training images: 4 batches an epoch, randomly cropped and flipped
    return ShapesClassificationDataModule(root, num_images=40, image_size=32, batch_size=8, num_workers=num_workers)


def task(**kwargs: Any) -> ClassificationTask:
    optimizer = lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)  # noqa: E731
    return ClassificationTask(num_classes=5, optimizer=optimizer, warmup_steps=3, **SMALL, **kwargs)


def trainer(root: Path, *callbacks: Callback, **kwargs: Any) -> L.Trainer:
    options: dict[str, Any] = {"accelerator": "cpu", "max_epochs": 3, "logger": False, "enable_progress_bar": False}
    options.update(enable_model_summary=False, default_root_dir=root, callbacks=list(callbacks), **kwargs)
    return L.Trainer(**options)


class Interrupt(Callback):
    """Stops the run with an error after ``step`` optimizer steps, as a preemption would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("preempted")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path, num_workers: int) -> None:
    dm = data(tmp_path / "shapes", num_workers)
    L.seed_everything(0)
    straight = task()
    trainer(tmp_path / "a", enable_checkpointing=False).fit(straight, datamodule=dm)

    L.seed_everything(0)
    first = task()
    # a checkpoint in the middle of the second epoch (step 6 of 4 + 4 + 4), then the run dies a step later
    every = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=6, save_last=True, save_top_k=-1)
    with pytest.raises(RuntimeError, match="preempted"):
        trainer(tmp_path / "b", every, Interrupt(7)).fit(first, datamodule=data(tmp_path / "shapes", num_workers))

    L.seed_everything(1)  # another seed, as a new command would draw: the checkpoint's is used
    resumed = task()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path / "c", enable_checkpointing=False).fit(
            resumed, datamodule=data(tmp_path / "shapes", num_workers), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
        )
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert resumed.global_step == straight.global_step == 12
    expected, got = straight.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert not torch.equal(first.state_dict()["model.head.fc.weight"], expected["model.head.fc.weight"])


class NaNAt(ClassificationTask):
    """A task fed one NaN pixel at one optimizer step: its loss and its BatchNorm statistics turn NaN."""

    nan_step = 1

    def training_loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch
        if self.global_step == self.nan_step:
            images = images.clone()
            images[0, 0, 0, 0] = float("nan")
        return super().training_loss((images, targets))


class Watch(Callback):
    """The weights before and after each training batch, and the optimizer steps taken."""

    def __init__(self) -> None:
        self.steps = 0
        self.before: dict[int, dict[str, Tensor]] = {}
        self.after: dict[int, dict[str, Tensor]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, idx: int) -> None:
        self.before[idx] = {k: v.clone() for k, v in module.state_dict().items()}

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self.after[args[-1]] = {k: v.clone() for k, v in module.state_dict().items()}

    def on_before_optimizer_step(self, *args: Any) -> None:
        self.steps += 1


def nan_task(**kwargs: Any) -> NaNAt:
    return NaNAt(num_classes=5, **SMALL, **kwargs)


def test_nonfinite_loss_stops_the_run_naming_the_batch(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(FloatingPointError) as err:
        trainer(tmp_path, checkpoints, max_epochs=1).fit(nan_task(), datamodule=data(tmp_path / "shapes", 0))
    message = str(err.value)
    assert "non-finite training loss nan at epoch 0, step 1 (batch 1 of the epoch)" in message
    assert "hard_loss=nan" in message and "nonfinite_loss=skip" in message
    assert message.count(".jpg") == 8  # the batch's images
    saved = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert saved == ["epoch=0-step=1.ckpt"]  # the step before; nothing after the NaN
    for path in (tmp_path / "ckpt").glob("*.ckpt"):
        assert first_nonfinite(torch.load(path, weights_only=True)["state_dict"]) is None


def test_nonfinite_loss_skips_the_update_when_asked(tmp_path: Path) -> None:
    watch = Watch()
    module = nan_task(nonfinite_loss="skip")
    trainer(tmp_path, watch, max_epochs=1, enable_checkpointing=False).fit(
        module, datamodule=data(tmp_path / "shapes", 0)
    )
    assert module.skipped_batches == 1 and watch.steps == 3  # 4 batches, one update dropped
    for name, value in watch.before[1].items():  # the NaN batch moved nothing, BatchNorm statistics included
        assert torch.equal(watch.after[1][name], value), name
    assert not torch.equal(watch.after[2]["model.head.fc.weight"], watch.before[2]["model.head.fc.weight"])
    assert first_nonfinite(module.state_dict()) is None


def test_a_nonfinite_model_is_never_saved(tmp_path: Path) -> None:
    module = task()
    with torch.no_grad():
        module.model.head.fc.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"weight model\.head\.fc\.weight holds NaN or infinity"):
        module.on_save_checkpoint({"state_dict": module.state_dict()})


def test_overfit_batches_replaces_the_training_order(tmp_path: Path) -> None:
    """Lightning's ``overfit_batches`` puts a sequential sampler in: the loader takes it (no resumable state)."""
    module = task()
    trainer(tmp_path, max_epochs=2, overfit_batches=1, enable_checkpointing=False).fit(
        module, datamodule=data(tmp_path / "shapes", 0)
    )
    assert module.global_step == 2
