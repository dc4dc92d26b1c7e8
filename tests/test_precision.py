"""Precision and devices. Every task trains and validates under ``bf16-mixed`` (CPU autocast here, ``16-mixed`` too
where a GPU is present) with finite float32 losses and finite metrics; the detector keeps its anchors, losses and
post-processing in float32 whatever the dtype of its head's outputs. ``configs/trainer/ddp.yaml`` composes with
every recipe, and docs/distributed.md states each recipe's batch, lr and 8-GPU override as its config has them."""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torchvision.models.detection.image_list import ImageList

from mobiletasks import create_model
from mobiletasks.cli import main
from mobiletasks.data import (
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    ShapesDetectionDataModule,
    ShapesSegmentationDataModule,
)
from mobiletasks.models.detection import SSDDetector
from mobiletasks.tasks import AttributeTask, ClassificationTask, DetectionTask, SegmentationTask

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"width_mult": 0.25}
# (precision, accelerator): bf16 autocast runs on any CPU; float16 autocast (with gradient scaling) needs a GPU
PRECISIONS = [
    pytest.param("bf16-mixed", "cpu", id="bf16-mixed"),
    pytest.param(
        "16-mixed", "cuda", id="16-mixed", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
    ),
]
LOW = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def _detection(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesDetectionDataModule(root, num_images=10, image_size=128, batch_size=4, num_workers=0, augment=False)
    task = DetectionTask("ssdlite_mobilenet_v2", num_classes=dm.num_classes, image_size=128, model_kwargs=SMALL)
    return task, dm


def _segmentation(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesSegmentationDataModule(
        root, num_images=10, image_size=64, crop_size=64, batch_size=4, num_workers=0, augment=False
    )
    task = SegmentationTask("deeplabv3_mobilenet_v2", num_classes=dm.num_classes, model_kwargs=SMALL)
    return task, dm


def _classification(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesClassificationDataModule(root, num_images=10, image_size=32, batch_size=4, num_workers=0)
    return ClassificationTask("mobilenet_v1", num_classes=dm.num_classes, model_kwargs=SMALL), dm


def _distillation(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Half labels, half a teacher (a saved classifier, run under the same autocast)."""
    dm = ShapesClassificationDataModule(root, num_images=10, image_size=32, batch_size=4, num_workers=0)
    weights = root.parent / "teacher.pth"
    torch.save(create_model("classifier", num_classes=dm.num_classes, backbone_kwargs=SMALL).state_dict(), weights)
    task = ClassificationTask(
        "mobilenet_v1",
        num_classes=dm.num_classes,
        model_kwargs=SMALL,
        teacher="classifier",
        teacher_weights=str(weights),
        teacher_kwargs={"backbone_kwargs": SMALL},
        temperature=2.0,
    )
    return task, dm


def _attributes(root: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    dm = ShapesAttributesDataModule(root, num_images=10, image_size=32, batch_size=4, num_workers=0)
    return AttributeTask("mobilenet_v1", num_classes=dm.num_classes, model_kwargs=SMALL), dm


# task builder, the validation metric its checkpoint monitors
TASKS: dict[str, tuple[Callable[[Path], tuple[L.LightningModule, L.LightningDataModule]], str]] = {
    "detection": (_detection, "val/map"),
    "segmentation": (_segmentation, "val/miou"),
    "classification": (_classification, "val/top1"),
    "distillation": (_distillation, "val/top1"),
    "attributes": (_attributes, "val/map"),
}


class Record(Callback):
    """The training losses, and the dtypes the first convolution computed in (autocast is really on)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.conv_dtypes: dict[str, set[torch.dtype]] = {"train": set(), "val": set()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(self._hook(pl_module))

    def _hook(self, pl_module: L.LightningModule) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            self.conv_dtypes["train" if pl_module.training else "val"].add(output.dtype)

        return hook

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.losses.append(outputs["loss"].detach())


@pytest.mark.parametrize(("precision", "accelerator"), PRECISIONS)
@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_and_validates(name: str, precision: str, accelerator: str, tmp_path: Path) -> None:
    build, monitor = TASKS[name]
    torch.manual_seed(0)
    task, dm = build(tmp_path / "data")
    record = Record()
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)

    assert record.conv_dtypes == {"train": {LOW[precision]}, "val": {LOW[precision]}}  # autocast was on
    assert len(record.losses) == 2
    for loss in record.losses:
        assert loss.dtype == torch.float32 and torch.isfinite(loss), record.losses  # reduced in float32
    metrics = trainer.callback_metrics
    assert monitor in metrics and metrics["val/images"] > 0, sorted(metrics)
    assert all(math.isfinite(float(v)) for k, v in metrics.items() if k.startswith("val/")), metrics


def _detector() -> tuple[SSDDetector, ImageList, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = create_model("ssdlite_mobilenet_v2", num_classes=80, size=320, score_thresh=0.05, topk_candidates=50)
    assert isinstance(model, SSDDetector)
    images = ImageList(torch.zeros(2, 3, 320, 320), [(320, 320), (300, 240)])
    maps = [torch.zeros(2, 1, n, n) for n in (20, 10, 5, 3, 2, 1)]
    return model.eval(), images, maps


def test_anchors_are_float32_whatever_the_features_dtype() -> None:
    model, images, maps = _detector()
    full = model.anchor_generator(images, maps)
    low = model.anchor_generator(images, [m.bfloat16() for m in maps])  # as the head's maps under autocast
    for a, b in zip(full, low, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # bfloat16 centers would be off by up to 0.5 px at 320


@pytest.mark.parametrize("autocast", [True, False], ids=["autocast", "bfloat16-weights"])
def test_postprocessing_runs_in_float32(autocast: bool) -> None:
    """bfloat16 head outputs (many classes: large per-class NMS offsets) give the detections of their float32
    values. Computed in bfloat16, scores tie and the class offsets of ``batched_nms`` swallow the coordinates;
    without autocast, torchvision's CPU NMS has no bfloat16 kernel at all."""
    model, images, maps = _detector()
    anchors = model.anchor_generator(images, maps)
    g = torch.Generator().manual_seed(0)
    head = {
        "bbox_regression": (torch.randn(2, len(anchors[0]), 4, generator=g) * 0.5).bfloat16(),
        "cls_logits": (torch.randn(2, len(anchors[0]), 81, generator=g) * 3).bfloat16(),
    }
    expected = model.postprocess_detections({k: v.float() for k, v in head.items()}, anchors, images.image_sizes)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        got = model.postprocess_detections(head, anchors, images.image_sizes)
    for ours, reference in zip(got, expected, strict=True):
        assert len(reference["scores"]) == model.detections_per_img  # the per-image cap is reached
        assert ours["boxes"].dtype == ours["scores"].dtype == torch.float32
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(ours[key], reference[key], rtol=0, atol=0)


@pytest.mark.parametrize("loss", ["hard_negative", "focal"])
def test_losses_are_float32_under_autocast(loss: str) -> None:
    torch.manual_seed(0)
    model = create_model("ssdlite_mobilenet_v2", num_classes=3, size=128, loss=loss, width_mult=0.25).train()
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 70, 90]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    assert isinstance(losses, dict)
    for value in losses.values():
        assert value.dtype == torch.float32 and torch.isfinite(value) and value > 0
    torch.stack(list(losses.values())).sum().backward()


def _recipe_table() -> dict[str, tuple[int, float, int]]:
    """docs/distributed.md's table: config -> (reference global batch, lr, per-GPU batch on 8 GPUs)."""
    rows = {}
    for line in (ROOT / "docs" / "distributed.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`\w+/\w+\.yaml`", cells[0]):
            per_gpu = re.fullmatch(r"`--data\.init_args\.batch_size (\d+)`", cells[5])
            assert per_gpu is not None, line
            rows[cells[0].strip("`")] = (int(cells[2]), float(cells[3]), int(per_gpu.group(1)))
    return rows


RECIPES = _recipe_table()


def test_the_docs_list_every_recipe() -> None:
    shipped = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").glob("*/*.yaml")}
    recipes = {name for name in shipped if not name.startswith("trainer/") and "quickstart" not in name}
    assert set(RECIPES) == recipes


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_ddp_config_composes_with_every_recipe(name: str) -> None:
    """``--config <recipe> --config configs/trainer/ddp.yaml`` with the docs' 8-GPU override keeps the recipe's global
    batch and lr, and the DDP settings; ``--print_config`` runs nothing."""
    batch, lr, per_gpu = RECIPES[name]
    out = io.StringIO()
    args = ["fit", "--config", str(ROOT / "configs" / name), "--config", str(ROOT / "configs/trainer/ddp.yaml")]
    args += ["--trainer.devices", "8", "--data.init_args.batch_size", str(per_gpu), "--print_config"]
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 0
    config = yaml.safe_load(out.getvalue())
    trainer = config["trainer"]
    assert trainer["strategy"]["class_path"] == "lightning.pytorch.strategies.DDPStrategy"
    assert trainer["strategy"]["init_args"]["find_unused_parameters"] is False
    assert trainer["sync_batchnorm"] is True and trainer["use_distributed_sampler"] is True
    assert trainer["logger"] is not None and trainer["callbacks"]  # the recipe's own trainer keys survive
    global_batch = (
        config["data"]["init_args"]["batch_size"] * 8 * trainer["num_nodes"] * trainer["accumulate_grad_batches"]
    )
    assert global_batch == batch
    original = yaml.safe_load((ROOT / "configs" / name).read_text())
    assert original["data"]["init_args"]["batch_size"] == batch  # the reference batch is the config's own
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == lr
