"""SSDLite-MobileNetV2 (ours, 80 classes) against torchvision's ssdlite320_mobilenet_v3_large, in one run.

- latency: batch-1 CPU inference in eval mode on the same 320x320 image, end to end (resize, network,
  post-processing) and the network alone. Ours "as built" is ``create_model``'s default (channels-last weights);
  "NCHW" is ``channels_last=False`` (the default before channels-last); "+opt" after
  ``mobiletasks.optimize_for_inference`` (BatchNorm folded, channels-last): what ``validate``, ``test``,
  ``predict`` and ``infer`` run (the CLI inference path), applied to both models. Random weights score every
  anchor about alike, which no trained detector does and which would make post-processing the whole
  measurement; both models therefore get the same background bias on their class logits, so a trained
  detector's share of anchors (a few hundred) passes the score threshold. Models are timed in interleaved
  rounds; the ratio is the figure that matters.
- training: images per second of a training step (forward, loss, backward, SGD step) at batch 8, as built.

    python benchmarks/detection.py [--rounds 10] [--iters 5] [--threads N] [--json] [--plot [PATH]]

Learnability and overfitting are training runs, measured with the CLI (see docs/benchmarks.md):
    python benchmarks/detection.py --learn     # the CPU quickstart: mAP@0.5 reached and minutes taken
    python benchmarks/detection.py --overfit   # coco128 train2017, evaluated on the same images
    python benchmarks/detection.py --from-metrics runs/quickstart   # the figure of runs already made

``--plot`` draws the latencies against MAdds (``mobiletasks.model_summary`` of each network) to
``docs/images/detection_latency.png``, or, with ``--learn``, ``--overfit`` or ``--from-metrics``, the runs'
validation mAP and training loss against the step to ``docs/images/detection_learning.png`` (or PATH).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from plotting import (
    Point,
    add_plot_arguments,
    best,
    figure_path,
    find_metrics,
    latency_figure,
    latency_note,
    learning_figure,
    run_name,
    save_figure,
)
from real_data import COCO128, require
from torch import Tensor, nn
from tqdm import tqdm

from mobiletasks import create_model, model_summary, optimize_for_inference

ROOT = Path(__file__).resolve().parents[1]
SIZE = 320
METRICS = {"val/map_50": "val mAP@0.5", "val/map": "val mAP@[.5:.95]"}  # plotted, column -> label


def classification_convs(model: nn.Module) -> list[nn.Conv2d]:
    branches = model.head.classification_head.module_list  # type: ignore[union-attr]
    return [[m for m in b.modules() if isinstance(m, nn.Conv2d)][-1] for b in branches]  # type: ignore[union-attr]


def trained_like(model: nn.Module, background_bias: float = 8.0) -> nn.Module:
    """Make the background class dominate, as it does in a trained detector."""
    classes = model.head.classification_head.num_columns  # type: ignore[union-attr]
    with torch.no_grad():
        for conv in classification_convs(model):
            conv.bias.view(-1, classes)[:, 0] += background_bias  # type: ignore[union-attr]
    return model


def detectors() -> dict[str, Callable[[], nn.Module]]:
    return {
        "mobiletasks ssdlite_mobilenet_v2": lambda: create_model("ssdlite_mobilenet_v2", num_classes=80),
        "mobiletasks ssdlite_mobilenet_v2 NCHW": lambda: create_model(
            "ssdlite_mobilenet_v2", num_classes=80, channels_last=False
        ),
        "torchvision ssdlite320_mobilenet_v3_large": lambda: torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None
        ),
    }


def network(model: nn.Module) -> Callable[[Tensor], object]:
    """Resize and normalize, backbone, head: the detector without anchors and post-processing."""

    def run(image: Tensor) -> object:
        images, _ = model.transform([image])  # type: ignore[operator]
        return model.head(list(model.backbone(images.tensors).values()))  # type: ignore[operator]

    return run


def latency(runs: dict[str, Callable[[Tensor], object]], rounds: int, iters: int) -> dict[str, float]:
    image = torch.rand(3, SIZE, SIZE)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():
            for _ in range(3):
                run(image)
        for _ in tqdm(range(rounds), desc="latency rounds", leave=False):
            for name, run in runs.items():
                start = time.perf_counter()
                for _ in range(iters):
                    run(image)
                times[name].append((time.perf_counter() - start) / iters * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def training_speed(models: dict[str, nn.Module], rounds: int, batch: int = 8) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(batch)]
    boxes = torch.tensor([[20.0, 30, 120, 160], [150, 100, 300, 310], [60, 200, 110, 260]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 5, 17])} for _ in range(batch)]  # valid in both
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in tqdm(range(rounds + 1), desc="training rounds", leave=False):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            losses = model(images, targets)
            optimizers[name].zero_grad()
            sum(losses.values()).backward()
            optimizers[name].step()
            if step:  # the first round warms up
                times[name].append(batch / (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def cli_run(args: list[str], workdir: Path) -> float:
    start = time.perf_counter()
    # progress bars go to stderr, so that --json prints nothing but the report
    subprocess.run([sys.executable, "-m", "mobiletasks", *args], cwd=workdir, check=True, stdout=sys.stderr)
    return (time.perf_counter() - start) / 60


def learn(workdir: Path) -> tuple[dict[str, float], Path]:
    """Train the CPU quickstart; its minutes and best mAP@0.5, and its metrics.csv."""
    minutes = cli_run(["fit", "--config", str(ROOT / "configs/detection/quickstart.yaml")], workdir)
    metrics = find_metrics(workdir / "runs" / "quickstart")
    return {"quickstart minutes": minutes, "quickstart best val/map_50": best(metrics, "val/map_50")}, metrics


def overfit(workdir: Path, epochs: int) -> tuple[dict[str, float], Path]:
    coco = require(COCO128)
    same = ["images/train2017", "annotations/instances_train2017.json"]
    args = ["fit", "--config", str(ROOT / "configs/detection/ssdlite_mobilenet_v2_coco.yaml")]
    args += ["--data.init_args.root", str(coco), "--data.init_args.train_images", same[0]]
    args += ["--data.init_args.train_annotations", same[1], "--data.init_args.val_images", same[0]]
    args += ["--data.init_args.val_annotations", same[1], "--data.init_args.batch_size", "16"]
    args += ["--data.init_args.num_workers", "2", "--data.init_args.augment", "false"]
    args += ["--model.init_args.optimizer", "torch.optim.AdamW", "--model.init_args.optimizer.lr", "0.01"]
    args += ["--model.init_args.warmup_steps", "50", "--trainer.max_epochs", str(epochs)]
    args += [
        "--trainer.check_val_every_n_epoch",
        str(max(1, epochs // 6)),
        "--trainer.logger.init_args.name",
        "overfit",
    ]
    args += ["--trainer.enable_progress_bar", "false"]
    minutes = cli_run(args, workdir)
    metrics = find_metrics(workdir / "runs" / "overfit")
    return {"overfit minutes": minutes, "overfit best val/map_50": best(metrics, "val/map_50")}, metrics


def madds(models: dict[str, nn.Module]) -> dict[str, float]:
    """Millions of MAdds of each detector on one 320x320 image: the network's (post-processing has none)."""
    return {name: model_summary(model, SIZE).macs / 1e6 for name, model in models.items()}


def plot_latency(path: Path, ms: dict[str, float], counts: dict[str, float], note: str) -> None:
    points = []
    for run, value in ms.items():
        model = max((name for name in counts if run.startswith(f"{name} ")), key=len)  # "... NCHW" over "..."
        what = run.removeprefix(f"{model} ").removeprefix("+opt ")  # "end to end" or "network"
        label = f"NCHW, {what}" if model.endswith("NCHW") else what
        opt = run.startswith(f"{model} +opt")
        points.append(Point(label, counts[model], value, peer=model.startswith("torchvision"), opt=opt))
    figure = latency_figure(
        points,
        title="Detection: batch-1 CPU latency against MAdds, 320x320",
        note=note,
        ours="ours ssdlite_mobilenet_v2",
        peer="torchvision ssdlite320_mobilenet_v3_large",
    )
    print(f"figure: {save_figure(figure, path)}", file=sys.stderr)


def plot_learning(path: Path, runs: list[tuple[str, Path]]) -> None:
    figure = learning_figure(runs, METRICS, title="Detection: learning curves (COCO mAP on the val split)")
    print(f"figure: {save_figure(figure, path)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--learn", action="store_true", help="train the CPU quickstart (minutes)")
    parser.add_argument("--overfit", type=int, default=0, metavar="EPOCHS", help="overfit coco128 for EPOCHS")
    parser.add_argument("--workdir", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--json", action="store_true")
    add_plot_arguments(parser, from_metrics=True)
    args = parser.parse_args()
    trains = args.learn or args.overfit or args.from_metrics
    if args.from_metrics and (args.learn or args.overfit):
        parser.error("--from-metrics plots runs already made: pass it without --learn and --overfit")
    figure_name = "detection_learning.png" if trains else "detection_latency.png"
    plot = figure_path(parser, args.plot, figure_name, always=bool(args.from_metrics))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    }
    if trains:
        curves: list[tuple[str, Path]] = []
        if args.from_metrics:
            for given in args.from_metrics:
                metrics = find_metrics(given)
                curves.append((run_name(metrics), metrics))
                report[f"{metrics} best val/map_50"] = best(metrics, "val/map_50")
        if args.learn or args.overfit:
            args.workdir.mkdir(parents=True, exist_ok=True)
        if args.learn:
            result, metrics = learn(args.workdir)
            report |= result
            curves.append(("CPU quickstart", metrics))
        if args.overfit:
            result, metrics = overfit(args.workdir, args.overfit)
            report |= result
            curves.append((f"coco128, overfit {args.overfit} epochs", metrics))
        if plot:
            plot_learning(plot, curves)
    else:
        models = {name: trained_like(build().eval()) for name, build in detectors().items()}
        ours, nchw, theirs = models
        runs: dict[str, Callable[[Tensor], object]] = {}
        for name, model in models.items():
            runs[f"{name} end to end"] = lambda image, model=model: model([image])
            if name != nchw:
                fast = optimize_for_inference(model)
                runs[f"{name} +opt end to end"] = lambda image, model=fast: model([image])
            runs[f"{name} network"] = network(model)
        ms = latency(runs, args.rounds, args.iters)
        if plot:
            note = latency_note(args.rounds, args.iters)
            plot_latency(plot, ms, madds(models), note)
        speed = training_speed(models, args.rounds)
        report |= {f"{k} ms": round(v, 2) for k, v in ms.items()}
        report |= {f"{k} train img/s": round(v, 2) for k, v in speed.items()}

        def ratio(a: str, b: str) -> float:
            return round(ms[a] / ms[b], 3)

        e2e = " end to end"
        report["latency ours/torchvision, as built"] = ratio(ours + e2e, theirs + e2e)
        report["latency ours NCHW/torchvision, as built"] = ratio(nchw + e2e, theirs + e2e)
        report["latency ours+opt/torchvision as built"] = ratio(f"{ours} +opt{e2e}", theirs + e2e)
        report["latency ours+opt/torchvision+opt"] = ratio(f"{ours} +opt{e2e}", f"{theirs} +opt{e2e}")
        report["latency ours/torchvision, network only"] = ratio(f"{ours} network", f"{theirs} network")
        report["training speed ours/torchvision"] = round(speed[ours] / speed[theirs], 3)
        report["training speed ours NCHW/torchvision"] = round(speed[nchw] / speed[theirs], 3)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<60} {value}")


if __name__ == "__main__":
    main()
