"""What the validation pictures and the figures cost: ``trainer.validate`` of each task's quickstart model on its
generated val split, in interleaved rounds, without a logger (the peer), with the TensorBoard + CSV logger and no
pictures (the figures alone), and with the logger and 8 pictures (as shipped). Prints each time and its ratio to
the run without a logger.

    python benchmarks/pictures.py [--rounds 3] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from mobiletasks.data import (
    ShapesAttributesDataModule,
    ShapesClassificationDataModule,
    ShapesDetectionDataModule,
    ShapesSegmentationDataModule,
)
from mobiletasks.tasks import (
    AttributeTask,
    BaseTask,
    ClassificationTask,
    DetectionTask,
    SegmentationTask,
    TensorBoardCSVLogger,
)

SETTINGS = {"no logger": (False, 0), "logger, figures": (True, 0), "logger, figures, 8 pictures": (True, 8)}


def cases(root: Path) -> dict[str, Callable[[int], tuple[BaseTask, L.LightningDataModule]]]:
    """Per task: its quickstart model and data (the configs' settings, fewer images) with ``n`` pictures."""

    def detection(n: int) -> tuple[BaseTask, L.LightningDataModule]:
        dm = ShapesDetectionDataModule(root / "det", num_images=500, image_size=160, num_workers=0, augment=False)
        kwargs = {"model_kwargs": {"width_mult": 0.5}, "image_size": 160, "log_val_images": n}
        return DetectionTask(num_classes=5, **kwargs), dm  # type: ignore[arg-type]

    def segmentation(n: int) -> tuple[BaseTask, L.LightningDataModule]:
        dm = ShapesSegmentationDataModule(root / "seg", num_images=500, image_size=128, crop_size=128, num_workers=0)
        return SegmentationTask(num_classes=6, image_size=128, log_val_images=n), dm

    def classification(n: int) -> tuple[BaseTask, L.LightningDataModule]:
        dm = ShapesClassificationDataModule(root / "cls", num_images=1000, image_size=64, num_workers=0)
        kwargs = {"model_kwargs": {"width_mult": 0.5}, "image_size": 64, "log_val_images": n}
        return ClassificationTask(num_classes=5, **kwargs), dm  # type: ignore[arg-type]

    def attributes(n: int) -> tuple[BaseTask, L.LightningDataModule]:
        dm = ShapesAttributesDataModule(root / "attr", num_images=1000, image_size=64, num_workers=0)
        kwargs = {"model_kwargs": {"width_mult": 0.5}, "image_size": 64, "log_val_images": n}
        return AttributeTask(num_classes=dm.num_classes, **kwargs), dm

    return {"detection": detection, "segmentation": segmentation, "classification": classification,
            "attributes": attributes}  # fmt: skip


def validate(build: Callable[[int], tuple[BaseTask, L.LightningDataModule]], logger: bool, n: int, out: Path) -> float:
    task, dm = build(n)
    torch.manual_seed(0)
    trainer = L.Trainer(
        logger=TensorBoardCSVLogger(out) if logger else False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    trainer.validate(task, dm, verbose=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, build in cases(Path(tmp)).items():
            build(0)[1].prepare_data()  # the generated files, before any timing
            times: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(args.rounds):
                for name, (logger, n) in SETTINGS.items():
                    times[name].append(validate(build, logger, n, Path(tmp) / "runs"))
            medians = {name: statistics.median(t) for name, t in times.items()}
            peer = medians["no logger"]
            results[task] = {**{f"{k} (s)": v for k, v in medians.items()}}
            results[task].update({f"{k} / no logger": v / peer for k, v in medians.items() if k != "no logger"})
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for task, figures in results.items():
        print(task)
        for name, value in figures.items():
            print(f"  {name:<40} {value:8.3f}")


if __name__ == "__main__":
    main()
