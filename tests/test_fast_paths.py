"""The fast paths give the plain paths' outputs: channels-last weights (the default of ``create_model``) against
contiguous ones, in training and evaluation, and the BatchNorm-folded copy that validation, test and prediction run
against the model itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import calibrate
from lightning.pytorch.callbacks import Callback
from torch import nn

from mobiletasks import create_model, fuse_bn_
from mobiletasks.data import ShapesClassificationDataModule, ShapesDetectionDataModule, ShapesSegmentationDataModule
from mobiletasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

SMALL = {"width_mult": 0.25}
MODELS = {  # name, arguments, input side
    "detection": ("ssdlite_mobilenet_v2", {"num_classes": 3, "size": 128}, 128),
    "segmentation": ("deeplabv3_mobilenet_v2", {"num_classes": 4, "output_stride": 16}, 96),
    "classification": ("mobilenet_v2", {"num_classes": 5}, 64),
}


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def _raw(model: nn.Module, images: torch.Tensor) -> Any:
    """The network's outputs on ``images``: a detector's head outputs (its detections sort near-tied scores of an
    untrained head in any order), a segmenter's logits, a classifier's logits."""
    head = getattr(model, "head", None)
    if head is None:
        out = model(images)
        return out["out"] if isinstance(out, dict) else out
    seen: list[Any] = []
    hook = head.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        model(images)
    finally:
        hook.remove()
    return seen[0]


def _loss(out: Any) -> torch.Tensor:
    if isinstance(out, dict) and "out" in out:
        return out["out"].square().mean()
    if isinstance(out, dict):
        return sum(out.values())  # type: ignore[return-value]
    return out.square().mean()


@pytest.mark.parametrize("kind", list(MODELS))
def test_channels_last_is_the_default_and_changes_no_output(kind: str) -> None:
    name, kwargs, side = MODELS[kind]
    torch.manual_seed(0)
    fast = create_model(name, **kwargs)
    plain = create_model(name, channels_last=False, **kwargs)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(fast) if w.shape[-1] > 1)
    assert all(w.is_contiguous() for w in _convs(plain))
    plain.load_state_dict(fast.state_dict())
    calibrate(fast, torch.rand(16, 3, side, side))  # enough values per channel at the 1x1 maps too
    plain.load_state_dict(fast.state_dict())
    images = torch.rand(2, 3, side, side)

    # evaluation: the same outputs
    with torch.no_grad():
        torch.testing.assert_close(_raw(fast.eval(), images), _raw(plain.eval(), images), atol=1e-4, rtol=1e-4)

    # training: the same loss and gradients. BatchNorm keeps its (calibrated) running statistics here: batch
    # statistics of a few images at the 1x1 maps amplify float rounding beyond any fixed tolerance, in either format;
    # dropout is off (its random mask follows the memory layout)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([1])}] * 2
    args = (images, targets) if kind == "detection" else (images,)
    losses = []
    for model in (fast, plain):
        model.train().apply(lambda m: m.eval() if isinstance(m, nn.BatchNorm2d | nn.Dropout) else None)
        losses.append(_loss(model(*args)))
        losses[-1].backward()
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-4)
    for a, b in zip(_convs(fast), _convs(plain), strict=True):
        assert a.grad is not None and b.grad is not None
        assert a.grad.is_contiguous(memory_format=torch.channels_last) or a.shape[-1] == 1
        # the kernels of the two layouts round differently, so the odd ReLU6 input within 1e-5 of 0 or 6 falls on
        # the other side of the kink and moves a few gradient entries by a visible amount: the gradients are compared
        # as wholes (a layout error would move all of them)
        assert (a.grad - b.grad).norm() <= 0.01 * b.grad.norm() + 1e-12


def test_channels_last_off_from_a_config() -> None:
    task = DetectionTask("ssdlite_mobilenet_v2", num_classes=2, model_kwargs={**SMALL, "channels_last": False})
    task._fold()  # what evaluation runs keeps the stated format too
    for model in (task.model, task.__dict__["_folded"]):
        full = [w for w in _convs(model) if w.shape[1] > 1 and w.shape[-1] > 1]  # where the two layouts differ
        assert full and all(not w.is_contiguous(memory_format=torch.channels_last) for w in full)


def test_fold_leaves_batchnorm_subclasses_that_do_more_alone() -> None:
    """timm's BatchNormAct2d normalizes and applies its activation: folding only the normalization would drop it."""
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    with_act = nn.Sequential(nn.Conv2d(3, 8, 3), timm_layers.BatchNormAct2d(8, act_layer=nn.ReLU))
    x = torch.randn(2, 3, 16, 16)
    for model in (plain, with_act):
        calibrate(model, x)
        model[1].weight.data.uniform_(-1, 1)  # negative scales too: a lost activation would show
        expected = model(x)
        fuse_bn_(model)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(plain[1], nn.Identity) and isinstance(with_act[1], timm_layers.BatchNormAct2d)


def _detection(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesDetectionDataModule(root, num_images=24, image_size=96, batch_size=4, num_workers=0, augment=False)
    return DetectionTask("ssdlite_mobilenet_v2", num_classes=dm.num_classes, image_size=96, model_kwargs=SMALL), dm


def _segmentation(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesSegmentationDataModule(
        root, num_images=8, image_size=64, crop_size=64, batch_size=4, num_workers=0, augment=False
    )
    return SegmentationTask("deeplabv3_mobilenet_v2", num_classes=dm.num_classes, model_kwargs=SMALL), dm


def _classification(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesClassificationDataModule(root, num_images=8, image_size=32, batch_size=4, num_workers=0)
    return ClassificationTask("mobilenet_v2", num_classes=dm.num_classes, model_kwargs=SMALL), dm


TASKS: dict[str, Callable[[Path], tuple[L.LightningModule, L.LightningDataModule]]] = {
    "detection": _detection,
    "segmentation": _segmentation,
    "classification": _classification,
}


class Spy(Callback):
    """At every evaluation and prediction batch: the network run is a folded copy, whose outputs are the model's."""

    def __init__(self) -> None:
        self.batches = {"val": 0, "test": 0, "predict": 0}

    def _check(self, split: str, pl_module: Any, batch: Any) -> None:
        net = pl_module.net
        assert net is not pl_module.model and not net.training
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in pl_module.model.modules())
        images = batch[0]
        if isinstance(images, list):
            images = torch.stack(images)
        with torch.no_grad():
            torch.testing.assert_close(_raw(net, images), _raw(pl_module.model, images), atol=1e-3, rtol=1e-3)
        self.batches[split] += 1

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any) -> None:
        self._check("val", pl_module, batch)

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any) -> None:
        self._check("test", pl_module, batch)

    def on_predict_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any) -> None:
        self._check("predict", pl_module, batch)


@pytest.mark.parametrize("kind", list(TASKS))
def test_evaluation_and_prediction_run_the_folded_model(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task, dm = TASKS[kind](tmp_path / "data")
    dm.setup("fit")
    train = dm.dataset("train")
    images = torch.stack([train[i][0] for i in range(min(16, len(train)))])
    calibrate(task.model, images)  # statistics of real inputs, so that outputs depend on the input
    spy = Spy()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[spy],
        default_root_dir=tmp_path,
    )
    state = {k: v.clone() for k, v in task.state_dict().items()}
    trainer.validate(task, datamodule=dm)
    trainer.test(task, datamodule=dm)
    trainer.predict(task, datamodule=dm)
    assert all(spy.batches.values()), spy.batches
    assert task.__dict__["_folded"] is None  # dropped after each loop
    after = task.state_dict()
    assert after.keys() == state.keys()  # the folded copy is not part of the weights
    assert all(torch.equal(after[k], v) for k, v in state.items())  # evaluation changed no weight

    trainer.fit(task.train(), datamodule=dm)  # validation inside fit runs it too; training runs the model
    assert spy.batches["val"] > 1 and task.net is task.model


@pytest.mark.parametrize(("cpus", "processes", "workers"), [(16, 1, 8), (16, 4, 3), (2, 1, 1), (2, 2, 0), (64, 8, 7)])
def test_default_num_workers_share_the_cpus(
    cpus: int, processes: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mobiletasks.data.base import default_num_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_num_workers(processes) == workers


def test_loaders_take_the_default_workers_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(3)), raising=False)
    auto = ShapesClassificationDataModule(tmp_path, num_images=8, image_size=32, batch_size=4)
    told = ShapesClassificationDataModule(tmp_path, num_images=8, image_size=32, batch_size=4, num_workers=0)
    auto.prepare_data()  # writes the images
    loader = auto.val_dataloader()
    assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (2, True, False)  # no GPU: no pinning
    assert (told.val_dataloader().num_workers, told.val_dataloader().persistent_workers) == (0, False)
