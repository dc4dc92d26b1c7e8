"""Batch-1 CPU inference latency of our MobileNet V1/V2 against torchvision's (and timm's) in one run.

Models are timed in interleaved rounds, so that machine noise hits all of them alike; the figure that
matters is the ratio to the peer measured in the same run, not the milliseconds. Each model runs as
built (eval mode) and, marked "+opt", after ``mobiletasks.optimize_for_inference`` (BatchNorm folded,
channels-last weights and input): the same rewrite applied to torchvision's model for a fair pair.

    python benchmarks/backbones.py [--size 224] [--rounds 15] [--iters 10] [--threads N] [--json] [--plot [PATH]]

``--plot`` draws latency against MAdds (``mobiletasks.model_summary``) for every model of the run, by default to
``docs/images/backbones_latency.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from plotting import Point, add_plot_arguments, figure_path, latency_figure, latency_note, save_figure
from torch import nn
from tqdm import tqdm

from mobiletasks import create_model, model_summary, optimize_for_inference


def peers() -> dict[str, Callable[[], nn.Module]]:
    models: dict[str, Callable[[], nn.Module]] = {
        "mobiletasks mobilenet_v2": lambda: create_model("mobilenet_v2"),
        "torchvision mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
        "mobiletasks mobilenet_v1": lambda: create_model("mobilenet_v1"),
    }
    try:
        import timm

        models["timm mobilenetv1_100"] = lambda: timm.create_model("mobilenetv1_100")
    except ImportError:
        pass
    return models


def measure(models: dict[str, nn.Module], size: int, rounds: int, iters: int) -> dict[str, list[float]]:
    """Milliseconds per image for each model, one list entry per round."""
    plain = torch.randn(1, 3, size, size)
    inputs = {name: plain.contiguous(memory_format=torch.channels_last) if "+opt" in name else plain for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up
            for _ in range(3):
                model(inputs[name])
        for _ in tqdm(range(rounds), desc="rounds", leave=False):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(iters):
                    model(inputs[name])
                times[name].append((time.perf_counter() - start) / iters * 1e3)
    return times


def latency_arguments(description: str | None, figure: str) -> argparse.Namespace:
    """The batch-1 latency scripts' arguments (``--size``, ``--rounds``, ``--iters``, ``--threads``, ``--json``,
    ``--plot``), parsed, with torch's threads and seed set from them; ``plot`` is the figure's path (``figure`` in
    ``docs/images`` for a bare ``--plot``) or None."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    add_plot_arguments(parser)
    args = parser.parse_args()
    args.plot = figure_path(parser, args.plot, figure)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args


def madds(models: dict[str, nn.Module], size: int) -> dict[str, float]:
    """Millions of MAdds of one ``size`` image for each model; "+opt" models count as the model they were made from
    (folding BatchNorm changes no multiply-add that matters)."""
    counted = {name: model_summary(model, size).macs / 1e6 for name, model in models.items() if "+opt" not in name}
    return {name: counted[name.removesuffix(" +opt")] for name in models}


def plot(path: Path, median: dict[str, float], counts: dict[str, float], note: str) -> None:
    points = [
        Point(
            name.removeprefix("mobiletasks ").removesuffix(" +opt"),
            counts[name],
            ms,
            peer=not name.startswith("mobiletasks"),
            opt=name.endswith("+opt"),
        )
        for name, ms in median.items()
    ]
    figure = latency_figure(points, title="Backbones: batch-1 CPU latency against MAdds", note=note)
    print(f"figure: {save_figure(figure, path)}", file=sys.stderr)


def main() -> None:
    args = latency_arguments(__doc__, "backbones_latency.png")
    models = {name: build().eval() for name, build in peers().items()}
    for name in ("mobiletasks mobilenet_v2", "torchvision mobilenet_v2"):
        models[f"{name} +opt"] = optimize_for_inference(models[name])
    times = measure(models, args.size, args.rounds, args.iters)
    median = {name: statistics.median(t) for name, t in times.items()}
    if args.plot:
        note = latency_note(args.rounds, args.iters, f"{args.size}x{args.size}")
        plot(args.plot, median, madds(models, args.size), note)
    tv = median["torchvision mobilenet_v2"]
    ratios = {
        "mobilenet_v2 ours/torchvision": median["mobiletasks mobilenet_v2"] / tv,
        "mobilenet_v2 ours+opt/torchvision": median["mobiletasks mobilenet_v2 +opt"] / tv,
        "mobilenet_v2 ours+opt/torchvision+opt": median["mobiletasks mobilenet_v2 +opt"]
        / median["torchvision mobilenet_v2 +opt"],
    }
    if "timm mobilenetv1_100" in median:
        ratios["mobilenet_v1 ours/timm"] = median["mobiletasks mobilenet_v1"] / median["timm mobilenetv1_100"]
    ratios["mobilenet_v1 ours / mobilenet_v2 torchvision"] = median["mobiletasks mobilenet_v1"] / tv
    if args.json:
        print(json.dumps({"median_ms": median, "ratios": ratios, "threads": torch.get_num_threads()}))
        return
    print(
        f"batch 1, {args.size}x{args.size}, CPU {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.rounds} rounds x {args.iters} images"
    )
    for name, t in times.items():
        print(f"  {name:<31} median {median[name]:7.2f} ms   (min {min(t):.2f}, max {max(t):.2f})")
    for name, ratio in ratios.items():
        print(f"  ratio {name:<44} {ratio:.3f}")


if __name__ == "__main__":
    main()
