"""Batch-1 CPU inference latency of our MobileNet V1/V2 against torchvision's (and timm's) in one run.

Models are timed in interleaved rounds, so that machine noise hits all of them alike; the figure that
matters is the ratio to the peer measured in the same run, not the milliseconds. Each model runs as
built (eval mode) and, marked "+opt", after ``mobiletasks.optimize_for_inference`` (BatchNorm folded,
channels-last weights and input): the same rewrite applied to torchvision's model for a fair pair.

    python benchmarks/backbones.py [--size 224] [--rounds 15] [--iters 10] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn
from tqdm import tqdm

from mobiletasks import create_model, optimize_for_inference


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


def latency_arguments(description: str | None) -> argparse.Namespace:
    """The batch-1 latency scripts' arguments (``--size``, ``--rounds``, ``--iters``, ``--threads``, ``--json``),
    parsed, with torch's threads and seed set from them."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args


def main() -> None:
    args = latency_arguments(__doc__)
    models = {name: build().eval() for name, build in peers().items()}
    for name in ("mobiletasks mobilenet_v2", "torchvision mobilenet_v2"):
        models[f"{name} +opt"] = optimize_for_inference(models[name])
    times = measure(models, args.size, args.rounds, args.iters)
    median = {name: statistics.median(t) for name, t in times.items()}
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
