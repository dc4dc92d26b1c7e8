"""Batch-1 CPU latency of the sources' other efficient networks against MobileNetV2 at matched MAdds, in one run.

Each network (ShuffleNet V1, ShiftNet-A/B/C, EffNet) is paired with the MobileNetV2 whose width multiplier gives
the MACs closest to its own (widths searched in steps of 0.05); every model runs as ``optimize_for_inference``
makes it (BatchNorm folded, channels-last), in interleaved rounds so machine noise hits all alike. The figure
that matters is each ratio to its partner, measured in the same run. For ShiftNet the bytes its shift operations
move are reported too (a shift has no multiply-adds but reads and writes its whole input), and the same network
with each shift run as the equivalent depthwise convolution with one-hot 3x3 kernels (``Shift.as_conv``).

    python benchmarks/efficient_nets.py [--size 224] [--rounds 15] [--iters 10] [--threads N] [--json] [--plot [PATH]]

``--plot`` draws latency against MAdds for every model of the run (the shift networks run as convolutions at the
MAdds of the network: the one-hot multiplies are not its arithmetic), by default to
``docs/images/efficient_nets_latency.png``.
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from backbones import latency_arguments, measure
from plotting import Point, latency_figure, latency_note, save_figure
from torch import nn

from mobiletasks import create_model, model_summary, optimize_for_inference
from mobiletasks.backbones.shiftnet import Shift

NETWORKS: dict[str, dict[str, Any]] = {
    "shufflenet_v1 1x g=3": {"name": "shufflenet_v1", "groups": 3},
    "shufflenet_v1 0.5x g=3": {"name": "shufflenet_v1", "groups": 3, "width_mult": 0.5},
    "shiftnet A": {"name": "shiftnet", "config": "A"},
    "shiftnet B": {"name": "shiftnet", "config": "B"},
    "shiftnet C": {"name": "shiftnet", "config": "C"},
    "effnet (imagenet)": {"name": "effnet"},
}


def macs(model: nn.Module, size: int) -> int:
    return int(model_summary(model, size).macs)


def mobilenet_v2_macs(size: int) -> dict[float, int]:
    """MobileNetV2's MACs at ``size`` for each width multiplier from 0.1 to 3.0 in steps of 0.05, counted once."""
    widths = [round(0.1 + 0.05 * i, 2) for i in range(59)]
    return {w: macs(create_model("mobilenet_v2", width_mult=w), size) for w in widths}


def matched_v2(target: int, v2_macs: dict[float, int]) -> tuple[float, nn.Module]:
    """The MobileNetV2 whose MACs (``v2_macs``, per width) are closest to ``target``, and its width multiplier."""
    best = min(v2_macs, key=lambda w: abs(v2_macs[w] - target))
    return best, create_model("mobilenet_v2", width_mult=best)


def shift_bytes(model: nn.Module, size: int) -> int:
    """Bytes the shift operations read and write on one float32 image: their inputs and outputs once (a lower bound;
    the eager form also pads)."""
    moved = 0

    def count(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal moved
        moved += (args[0].numel() + out.numel()) * args[0].element_size()

    hooks = [m.register_forward_hook(count) for m in model.modules() if type(m).__name__ == "Shift"]
    with torch.inference_mode():
        model.eval()(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return moved


def short(label: str) -> str:
    """A point's label: "ShuffleNet 1x g=3", "ShiftNet A", "EffNet", "V2 0.6" (MobileNetV2 at width 0.6)."""
    for long, brief in (("shufflenet_v1", "ShuffleNet"), ("shiftnet", "ShiftNet"), ("mobilenet_v2", "V2")):
        label = label.replace(long, brief)
    return label.replace("effnet (imagenet)", "EffNet")


def plot(path: Path, median: dict[str, float], info: dict[str, dict[str, Any]], note: str) -> None:
    points: dict[str, Point] = {}
    for label, i in info.items():
        points[label] = Point(short(label), i["macs"] / 1e6, median[f"{label} +opt"], opt=True)
        if i["shift_mb"]:
            as_conv = Point(f"{short(label)} as convs", i["macs"] / 1e6, median[f"{label} as-conv +opt"], opt=True)
            points[f"{label} as-conv"] = as_conv
        partner = i["partner"]
        v2 = Point(short(partner), i["partner_macs"] / 1e6, median[f"{partner} +opt"], peer=True, opt=True)
        points[partner] = v2
    figure = latency_figure(
        list(points.values()),
        title="Efficient networks against MobileNetV2 of matched MAdds",
        note=note,
        ours="ShuffleNet V1 / ShiftNet / EffNet",
        peer="MobileNetV2 of matched MAdds (V2 width)",
    )
    print(f"figure: {save_figure(figure, path)}", file=sys.stderr)


def main() -> None:
    args = latency_arguments(__doc__, "efficient_nets_latency.png")
    v2_macs = mobilenet_v2_macs(args.size)
    models: dict[str, nn.Module] = {}
    info: dict[str, dict[str, Any]] = {}
    for label, spec in NETWORKS.items():
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        net = create_model(spec["name"], **kwargs).eval()
        count = macs(net, args.size)
        width, v2 = matched_v2(count, v2_macs)
        partner = f"mobilenet_v2 {width}"
        info[label] = {"macs": count, "params": sum(p.numel() for p in net.parameters()), "partner": partner}
        info[label]["partner_macs"] = v2_macs[width]
        info[label]["shift_mb"] = shift_bytes(net, args.size) / 1e6
        models[f"{label} +opt"] = optimize_for_inference(net)
        if info[label]["shift_mb"]:
            as_conv = copy.deepcopy(net)
            for m in as_conv.modules():
                if isinstance(m, Shift):
                    m.forward = m.as_conv  # type: ignore[method-assign]
            models[f"{label} as-conv +opt"] = optimize_for_inference(as_conv)
        models.setdefault(f"{partner} +opt", optimize_for_inference(v2.eval()))
    times = measure(models, args.size, args.rounds, args.iters)
    median = {name: statistics.median(t) for name, t in times.items()}
    ratios = {label: median[f"{label} +opt"] / median[f"{i['partner']} +opt"] for label, i in info.items()}
    shift_vs_conv = {
        label: median[f"{label} +opt"] / median[f"{label} as-conv +opt"] for label, i in info.items() if i["shift_mb"]
    }
    if args.plot:
        note = latency_note(args.rounds, args.iters, f"{args.size}x{args.size}, all +opt")
        plot(args.plot, median, info, note)
    if args.json:
        out = {"median_ms": median, "ratios": ratios, "shift_vs_conv": shift_vs_conv, "info": info}
        print(json.dumps({**out, "threads": torch.get_num_threads()}))
        return
    print(
        f"batch 1, {args.size}x{args.size}, CPU {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.rounds} rounds x {args.iters} images, all +opt"
    )
    for label, i in info.items():
        partner = i["partner"]
        print(
            f"  {label:<24} {i['macs'] / 1e6:6.1f}M MACs {i['params'] / 1e6:5.2f}M params "
            f"{median[f'{label} +opt']:7.2f} ms | {partner:<18} {i['partner_macs'] / 1e6:6.1f}M MACs "
            f"{median[f'{partner} +opt']:7.2f} ms | ratio {ratios[label]:.3f}"
            + (f" | shifts move {i['shift_mb']:.1f} MB" if i["shift_mb"] else "")
        )
    for label, ratio in shift_vs_conv.items():
        print(
            f"  {label}: shifts as slices {median[f'{label} +opt']:.2f} ms, as one-hot depthwise convs "
            f"{median[f'{label} as-conv +opt']:.2f} ms, ratio {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
