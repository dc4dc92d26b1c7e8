"""Mobile DeepLabV3 (ours: MobileNetV2, output stride 16, no ASPP, 21 classes) against torchvision's
deeplabv3_mobilenet_v3_large and lraspp_mobilenet_v3_large, in one run.

Batch-1 CPU latency at 513x513 in eval mode under ``torch.inference_mode()``, models timed in interleaved
rounds. Ours as built is ``create_model``'s default (channels-last weights), "NCHW" ``channels_last=False`` (the
default before); "+opt" is ``mobiletasks.optimize_for_inference`` (BatchNorm folded, channels-last: what
``validate``, ``test``, ``predict`` and ``infer`` run), applied to every model. The ratios are the result.

    python benchmarks/segmentation.py [--rounds 10] [--iters 3] [--threads N] [--json] [--plot [PATH]]
    python benchmarks/segmentation.py --learn     # the CPU quickstart: mIoU reached and minutes taken
    python benchmarks/segmentation.py --from-metrics runs/segmentation_quickstart   # the figure of a run made

``--plot`` draws the latencies against MAdds (``mobiletasks.model_summary`` at 513x513) to
``docs/images/segmentation_latency.png``, or, with ``--learn`` or ``--from-metrics``, the runs' validation mIoU
and training loss against the step to ``docs/images/segmentation_learning.png`` (or PATH).
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
from torch import nn
from tqdm import tqdm

from mobiletasks import create_model, model_summary, optimize_for_inference

ROOT = Path(__file__).resolve().parents[1]
SIZE = 513
METRICS = {"val/miou": "val mIoU"}  # plotted, column -> label


def models() -> dict[str, Callable[[], nn.Module]]:
    seg = torchvision.models.segmentation
    return {
        "mobiletasks deeplabv3_mobilenet_v2": lambda: create_model("deeplabv3_mobilenet_v2", aspp=False),
        "mobiletasks deeplabv3_mobilenet_v2 NCHW": lambda: create_model(
            "deeplabv3_mobilenet_v2", aspp=False, channels_last=False
        ),
        "torchvision deeplabv3_mobilenet_v3_large": lambda: seg.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, aux_loss=False
        ),
        "torchvision lraspp_mobilenet_v3_large": lambda: seg.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None
        ),
    }


def latency(nets: dict[str, nn.Module], rounds: int, iters: int) -> dict[str, float]:
    x = torch.rand(1, 3, SIZE, SIZE)
    times: dict[str, list[float]] = {name: [] for name in nets}
    with torch.inference_mode():
        for net in nets.values():
            for _ in range(2):
                net(x)
        for _ in tqdm(range(rounds), desc="latency rounds", leave=False):
            for name, net in nets.items():
                start = time.perf_counter()
                for _ in range(iters):
                    net(x)
                times[name].append((time.perf_counter() - start) / iters * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def learn(workdir: Path) -> tuple[dict[str, float], Path]:
    """Train the CPU quickstart; its minutes and best mIoU, and its metrics.csv."""
    start = time.perf_counter()
    config = ROOT / "configs" / "segmentation" / "quickstart.yaml"
    # progress bars go to stderr, so that --json prints nothing but the report
    subprocess.run(
        [sys.executable, "-m", "mobiletasks", "fit", "--config", str(config)],
        cwd=workdir,
        check=True,
        stdout=sys.stderr,
    )
    minutes = (time.perf_counter() - start) / 60
    metrics = find_metrics(workdir / "runs" / "segmentation_quickstart")
    return {"quickstart minutes": minutes, "quickstart best val/miou": best(metrics, "val/miou")}, metrics


def plot_latency(path: Path, ms: dict[str, float], nets: dict[str, nn.Module], note: str) -> None:
    """Each model at its MAdds (counted as built; "+opt" folds BatchNorm, no multiply-add that matters)."""
    counts = {name: model_summary(net, SIZE).macs / 1e6 for name, net in nets.items() if "+opt" not in name}
    points = []
    for name, value in ms.items():
        model = name.removesuffix(" +opt")
        label = model.split(" ", 1)[1].replace("deeplabv3_", "DeepLabV3 ").replace("lraspp_", "LR-ASPP ")
        peer = model.startswith("torchvision")
        points.append(Point(label, counts[model], value, peer=peer, opt=name.endswith("+opt")))
    figure = latency_figure(
        points, title="Segmentation: batch-1 CPU latency against MAdds, 513x513", note=note, peer="torchvision"
    )
    print(f"figure: {save_figure(figure, path)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--learn", action="store_true", help="train the CPU quickstart (minutes)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--json", action="store_true")
    add_plot_arguments(parser, from_metrics=True)
    args = parser.parse_args()
    if args.from_metrics and args.learn:
        parser.error("--from-metrics plots runs already made: pass it without --learn")
    trains = args.learn or args.from_metrics
    figure_name = "segmentation_learning.png" if trains else "segmentation_latency.png"
    plot = figure_path(parser, args.plot, figure_name, always=bool(args.from_metrics))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict[str, object] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    if trains:
        curves: list[tuple[str, Path]] = []
        for given in args.from_metrics or []:
            metrics = find_metrics(given)
            curves.append((run_name(metrics), metrics))
            report[f"{metrics} best val/miou"] = best(metrics, "val/miou")
        if args.learn:
            args.workdir.mkdir(parents=True, exist_ok=True)
            result, metrics = learn(args.workdir)
            report |= result
            curves.append(("CPU quickstart", metrics))
        if plot:
            figure = learning_figure(curves, METRICS, title="Segmentation: learning curves (mIoU on the val split)")
            print(f"figure: {save_figure(figure, plot)}", file=sys.stderr)
    else:
        nets = {name: build().eval() for name, build in models().items()}
        nets |= {f"{name} +opt": optimize_for_inference(net) for name, net in list(nets.items()) if "NCHW" not in name}
        ms = latency(nets, args.rounds, args.iters)
        if plot:
            note = latency_note(args.rounds, args.iters)
            plot_latency(plot, ms, nets, note)
        report |= {f"{name} ms": round(v, 2) for name, v in ms.items()}
        ours, nchw, deeplab, lraspp = models()
        report["ours NCHW/deeplabv3_mobilenet_v3_large"] = round(ms[nchw] / ms[deeplab], 3)
        for suffix in ("", " +opt"):
            report[f"ours/deeplabv3_mobilenet_v3_large{suffix}"] = round(ms[ours + suffix] / ms[deeplab + suffix], 3)
            report[f"ours/lraspp_mobilenet_v3_large{suffix}"] = round(ms[ours + suffix] / ms[lraspp + suffix], 3)
        report["ours +opt/deeplabv3_mobilenet_v3_large as built"] = round(ms[f"{ours} +opt"] / ms[deeplab], 3)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<60} {value}")


if __name__ == "__main__":
    main()
