"""Training throughput on a GPU (images/s): mobiletasks against torchvision peers, in one run.

A training step is forward, loss, backward and an SGD step (momentum 0.9) on synthetic data that is already
on the device, so the network (and the detectors' target matching) is measured, not a data loader:

- detection, 320x320, batch 64, 3 boxes an image: ours ``ssdlite_mobilenet_v2`` (80 classes, 0-based labels)
  against torchvision's ``ssdlite320_mobilenet_v3_large`` (91 classes, 1-based labels, 0 is background);
  both take a list of images and a list of target dicts and return a dict of losses.
- segmentation, 513x513, batch 16, cross-entropy with ignore_index 255 (a tenth of the pixels): ours
  ``deeplabv3_mobilenet_v2`` at output stride 16 without ASPP (the V2 paper's setting) and as built by
  default (output stride 16, ASPP), against torchvision's ``deeplabv3_mobilenet_v3_large`` (no aux loss).
- classification, 224x224, batch 256, 1000 classes: ours ``mobilenet_v1`` and ``mobilenet_v2`` against
  torchvision's ``mobilenet_v2``.

Every task runs in fp32 and under bf16 autocast, with the default memory format and channels-last (model
and input; the detectors batch their list of images themselves, so only their weights are channels-last).
Within a task and setting the models are timed in interleaved rounds after a warm-up, with
``torch.cuda.synchronize()`` around each timed block; the medians are reported, and the ratios ours/peer
are the result. cuDNN autotuning (``torch.backends.cudnn.benchmark``) is on unless
``--no-cudnn-benchmark``. Progress and each setting's figures go to stderr as they come.

    python benchmarks/gpu.py [--rounds 5] [--iters 3] [--warmup 3] [--tasks detection segmentation
        classification] [--precisions fp32 bf16] [--formats default channels_last] [--json]
    python benchmarks/gpu.py --device cpu --quick     # tiny sizes and one round: checks that it runs
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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from mobiletasks import create_model

Loss = Callable[[nn.Module], Tensor]
FORMATS = {"default": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class Task:
    size: int
    batch: int
    models: dict[str, Callable[[], nn.Module]]  # ours first, the peer last
    losses: Callable[[torch.device, torch.memory_format], dict[str, Loss]]  # synthetic data on the device

    @property
    def peer(self) -> str:
        return list(self.models)[-1]


def detection(size: int, batch: int) -> Task:
    ours, peer = "mobiletasks ssdlite_mobilenet_v2", "torchvision ssdlite320_mobilenet_v3_large"
    models: dict[str, Callable[[], nn.Module]] = {
        ours: lambda: create_model("ssdlite_mobilenet_v2", num_classes=80, size=size),
        peer: lambda: torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=91
        ),
    }

    def losses(device: torch.device, memory_format: torch.memory_format) -> dict[str, Loss]:
        g = torch.Generator().manual_seed(0)
        images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
        targets = []
        for _ in range(batch):
            xy = torch.rand(3, 2, generator=g) * size * 0.6
            wh = (torch.rand(3, 2, generator=g) * 0.5 + 0.1) * size
            boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
            targets.append({"boxes": boxes.to(device), "labels": torch.randint(0, 80, (3,), generator=g).to(device)})
        # the same objects for both: 0-based classes for ours, torchvision counts background as class 0
        shifted = [{**t, "labels": t["labels"] + 1} for t in targets]

        def loss(model: nn.Module, targets: list[dict[str, Tensor]]) -> Tensor:
            return sum(model(images, targets).values())  # type: ignore[return-value]

        return {ours: lambda m: loss(m, targets), peer: lambda m: loss(m, shifted)}

    return Task(size, batch, models, losses)


def segmentation(size: int, batch: int) -> Task:
    seg = torchvision.models.segmentation
    models: dict[str, Callable[[], nn.Module]] = {
        "mobiletasks deeplabv3_mobilenet_v2 OS16 no ASPP": lambda: create_model(
            "deeplabv3_mobilenet_v2", num_classes=21, output_stride=16, aspp=False
        ),
        "mobiletasks deeplabv3_mobilenet_v2 default (OS16, ASPP)": lambda: create_model(
            "deeplabv3_mobilenet_v2", num_classes=21
        ),
        "torchvision deeplabv3_mobilenet_v3_large": lambda: seg.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False
        ),
    }

    def losses(device: torch.device, memory_format: torch.memory_format) -> dict[str, Loss]:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=memory_format)
        y = torch.randint(0, 21, (batch, size, size), generator=g)
        y[torch.rand(batch, size, size, generator=g) < 0.1] = 255
        y = y.to(device)

        def loss(model: nn.Module) -> Tensor:
            return F.cross_entropy(model(x)["out"], y, ignore_index=255)

        return dict.fromkeys(models, loss)

    return Task(size, batch, models, losses)


def classification(size: int, batch: int) -> Task:
    models: dict[str, Callable[[], nn.Module]] = {
        "mobiletasks mobilenet_v1": lambda: create_model("mobilenet_v1", num_classes=1000),
        "mobiletasks mobilenet_v2": lambda: create_model("mobilenet_v2", num_classes=1000),
        "torchvision mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    }

    def losses(device: torch.device, memory_format: torch.memory_format) -> dict[str, Loss]:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=memory_format)
        y = torch.randint(0, 1000, (batch,), generator=g).to(device)

        def loss(model: nn.Module) -> Tensor:
            return F.cross_entropy(model(x), y)

        return dict.fromkeys(models, loss)

    return Task(size, batch, models, losses)


# name -> (builder, (size, batch), (size, batch) with --quick)
TASKS: dict[str, tuple[Callable[[int, int], Task], tuple[int, int], tuple[int, int]]] = {
    "detection": (detection, (320, 64), (320, 2)),
    "segmentation": (segmentation, (513, 16), (129, 2)),
    "classification": (classification, (224, 256), (96, 4)),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    task: Task, device: torch.device, precision: str, fmt: str, rounds: int, iters: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Median images/s of each model (and, on CUDA, its peak memory in MiB), timed in interleaved rounds."""
    memory_format = FORMATS[fmt]
    losses = task.losses(device, memory_format)
    models = {name: build().to(device, memory_format=memory_format).train() for name, build in task.models.items()}
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in models.items()}

    def step(name: str) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = losses[name](models[name])
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        return loss

    result: dict[str, dict[str, float]] = {name: {} for name in models}
    for name in models:  # warm-up: cuDNN autotuning, allocator, lazy initialisation
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step(name)
        sync(device)
        if device.type == "cuda":
            result[name]["peak MiB"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    speeds: dict[str, list[float]] = {name: [] for name in models}
    last: dict[str, Tensor] = {}
    for _ in range(rounds):
        for name in models:
            sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                last[name] = step(name)
            sync(device)
            speeds[name].append(task.batch * iters / (time.perf_counter() - start))
    for name in models:
        result[name]["img/s"] = round(statistics.median(speeds[name]), 1)
        if not torch.isfinite(last[name]).item():
            result[name]["loss not finite"] = 1.0
    return result


def machine(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn.benchmark"] = torch.backends.cudnn.benchmark
        info["cudnn.allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul.allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    else:
        info["cpu"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="training steps per timed block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps per model and setting")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round of one step: a smoke test")
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN autotuning off")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here; pass --device cpu (with --quick for a smoke test)")
    if args.quick:
        args.rounds, args.iters, args.warmup = 1, 1, 1
    torch.backends.cudnn.benchmark = device.type == "cuda" and not args.no_cudnn_benchmark
    torch.manual_seed(0)
    report: dict[str, object] = {"machine": machine(device), "rounds": args.rounds, "iters": args.iters}
    begin = time.perf_counter()
    for task_name in args.tasks:
        build, full, quick = TASKS[task_name]
        size, batch = quick if args.quick else full
        task = build(size, batch)
        report[f"{task_name} size"], report[f"{task_name} batch"] = size, batch
        for fmt in args.formats:
            for precision in args.precisions:
                setting = f"{task_name} {precision} {fmt}"
                print(f"[{time.perf_counter() - begin:6.1f}s] {setting} ...", file=sys.stderr, flush=True)
                try:
                    result = throughput(task, device, precision, fmt, args.rounds, args.iters, args.warmup)
                except Exception as error:  # report it and go on with the other settings
                    report[f"{setting} error"] = f"{type(error).__name__}: {error}"[:500]
                    print(f"    failed: {report[f'{setting} error']}", file=sys.stderr, flush=True)
                    continue
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                peer = result[task.peer]["img/s"]
                for name, figures in result.items():
                    for key, value in figures.items():
                        report[f"{setting} {name} {key}"] = value
                    if name != task.peer:
                        report[f"{setting} {name} / peer"] = round(figures["img/s"] / peer, 3)
                    print(f"    {name:<58} {figures}", file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - begin, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<90} {value}")


if __name__ == "__main__":
    main()
