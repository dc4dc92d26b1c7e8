"""Deployment on the CPU, in one run: eager PyTorch, onnxruntime fp32 and onnxruntime int8 of ours against
torchvision's peers in eager mode, as their users run them.

- detection: ``ssdlite_mobilenet_v2`` (80 classes, 320x320) against ``ssdlite320_mobilenet_v3_large``;
- segmentation: ``deeplabv3_mobilenet_v2`` (output stride 16, no ASPP, 21 classes, 513x513) against
  ``deeplabv3_mobilenet_v3_large``.

Every model has random weights and random BatchNorm statistics. Ours runs eager (``model(images)`` under
``torch.inference_mode()``, resizing, normalization and post-processing inside) and as the files of
``mobiletasks.deploy.export_onnx`` and ``quantize_int8`` through ``OnnxPredictor`` (the same steps inside the
graph); torchvision's run eager with their own preprocessing (the detector's inside, the segmenter's
normalization before it) and the same thread count. Batches of 1 and 8 images, models timed in interleaved rounds
with a short pause before each (``latency``), medians; the ratios (ours / torchvision) are the result.

A detector's post-processing costs what the number of (anchor, class) pairs above its score threshold makes it
cost, and random weights put every pair above 0.001. Each detector's background logit is therefore raised by the
bias that leaves ``--candidates`` pairs (a trained detector's few hundred) above its own score threshold (0.001 for
both) on the benchmark image, so both run NMS on the same number of candidates.

Speed against the machine: GFLOP/s = 2 x MACs x batch / latency, MACs those of one image through the network
(convolutions and matrix products, ``mobiletasks.model_summary``; resizing and post-processing not counted), set
against the GFLOP/s of an fp32 ``torch.mm`` of two 2048x2048 matrices with the same threads in the same rounds,
this CPU's practical peak. int8 runs count the same MACs (as int8 operations).

    python benchmarks/deploy.py [--rounds 10] [--iters 2] [--threads N] [--candidates 300] [--pause 0.05] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
import torchvision
from detection import classification_convs
from real_data import COCO128
from torch import Tensor, nn
from tqdm import tqdm

from mobiletasks import create_model, model_summary
from mobiletasks.deploy import OnnxPredictor, export_onnx
from mobiletasks.deploy.quantize import quantize_int8

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = COCO128 / "images" / "train2017"
DET_SIZE, SEG_SIZE = 320, 513
MATMUL = 2048
Calls = dict[str, dict[int, Callable[[], object]]]  # per entry, per batch size: one call to time
# the targets: latency ours / torchvision eager
TARGETS = {"detection fp32": 0.5, "detection int8": 0.35, "segmentation fp32": 0.3, "segmentation int8": 0.3}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (as tests/conftest.py), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)  # type: ignore[union-attr]
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def match_candidates(model: Any, image: Tensor, candidates: int) -> float:
    """Raise the background logit of ``model`` (an SSD with softmax scores, background first) by the bias that
    leaves ``candidates`` (anchor, class) pairs above its score threshold on ``image``; returns the bias."""
    with torch.inference_mode():
        images, _ = model.transform([image])
        logits = model.head(list(model.backbone(images.tensors).values()))["cls_logits"][0]

    def above(bias: float) -> int:
        shifted = logits.clone()
        shifted[:, 0] += bias
        return int((shifted.softmax(-1)[:, 1:] > model.score_thresh).sum())

    low, high = 0.0, 64.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if above(mid) > candidates else (low, mid)
    classes = model.head.classification_head.num_columns
    with torch.no_grad():
        for conv in classification_convs(model):
            conv.bias.view(-1, classes)[:, 0] += high  # type: ignore[union-attr]
    return high


def onnx_files(model: nn.Module, size: int, folder: Path, name: str, calibration: Path, count: int) -> list[Path]:
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    export_onnx(model, fp32, input_size=size)
    quantize_int8(fp32, int8, calibration, count=count)
    return [fp32, int8]


def runners(args: argparse.Namespace, folder: Path) -> tuple[Calls, dict[str, Any]]:
    """Per entry and batch size a call to time, and what the report needs to know (MACs, candidate counts)."""
    threads = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    det_image = torch.rand(3, DET_SIZE, DET_SIZE, generator=g)
    seg_image = torch.rand(3, SEG_SIZE, SEG_SIZE, generator=g)
    ours_det = randomize(create_model("ssdlite_mobilenet_v2", num_classes=80))
    tv_det = randomize(torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))
    ours_seg = randomize(create_model("deeplabv3_mobilenet_v2", num_classes=21, output_stride=16, aspp=False))
    tv_seg = randomize(
        torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None)
    )
    info: dict[str, Any] = {
        "background bias ours / torchvision": [
            round(match_candidates(m, det_image, args.candidates), 3) for m in (ours_det, tv_det)
        ],
        "macs": {
            "detection ours": model_summary(ours_det, DET_SIZE).macs,
            "detection torchvision": model_summary(tv_det, DET_SIZE).macs,
            "segmentation ours": model_summary(ours_seg, SEG_SIZE).macs,
            "segmentation torchvision": model_summary(tv_seg, SEG_SIZE).macs,
        },
    }
    det_files = onnx_files(ours_det, DET_SIZE, folder, "ssdlite", args.calibration_images, args.calibration_count)
    seg_files = onnx_files(ours_seg, SEG_SIZE, folder, "deeplab", args.calibration_images, args.calibration_count)
    det_onnx = [OnnxPredictor(f, threads=threads) for f in det_files]
    seg_onnx = [OnnxPredictor(f, threads=threads) for f in seg_files]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # torchvision's segmentation preprocessing
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def tv_segment(batch: Tensor) -> Tensor:
        return tv_seg((batch - mean) / std)["out"]

    entries: Calls = {}
    for n in args.batches:
        det_list = [det_image] * n
        det_array = torch.stack(det_list).numpy()
        seg_batch = seg_image.expand(n, -1, -1, -1).contiguous()
        seg_array = seg_batch.numpy()
        calls = {
            "detection ours eager": lambda x=det_list: ours_det(x),
            "detection ours onnxruntime fp32": lambda x=det_array: det_onnx[0](x),
            "detection ours onnxruntime int8": lambda x=det_array: det_onnx[1](x),
            "detection torchvision eager": lambda x=det_list: tv_det(x),
            "segmentation ours eager": lambda x=seg_batch: ours_seg(x)["out"],
            "segmentation ours onnxruntime fp32": lambda x=seg_array: seg_onnx[0](x),
            "segmentation ours onnxruntime int8": lambda x=seg_array: seg_onnx[1](x),
            "segmentation torchvision eager": lambda x=seg_batch: tv_segment(x),
        }
        for name, call in calls.items():
            entries.setdefault(name, {})[n] = call
    a, b = torch.rand(MATMUL, MATMUL, generator=g), torch.rand(MATMUL, MATMUL, generator=g)
    entries["fp32 matmul 2048"] = {1: lambda: torch.mm(a, b)}
    with torch.inference_mode():
        info["detections ours eager / onnx fp32 / onnx int8 / torchvision"] = [
            len(ours_det([det_image])[0]["boxes"]),
            *(len(p(det_image[None].numpy())[0]["boxes"]) for p in det_onnx),
            len(tv_det([det_image])[0]["boxes"]),
        ]
    return entries, info


def latency(entries: Calls, rounds: int, iters: int, pause: float) -> dict[tuple[str, int], float]:
    """Median milliseconds per call of each entry and batch size, in interleaved rounds. Each timed block starts
    ``pause`` seconds after the previous one ends: onnxruntime's and torch's worker threads spin-wait for work for
    a while after a run, and on a 2-core machine they take a core from whatever runs next (torchvision's detector
    took 58 ms right after an onnxruntime run, 37 ms alone), where each would run alone in use."""
    times: dict[tuple[str, int], list[float]] = {(name, n): [] for name, calls in entries.items() for n in calls}
    with torch.inference_mode():
        for name, n in times:
            for _ in range(2):
                entries[name][n]()
        for _ in tqdm(range(rounds), desc="latency rounds", leave=False):
            for name, n in times:
                time.sleep(pause)
                start = time.perf_counter()
                for _ in range(iters):
                    entries[name][n]()
                times[name, n].append((time.perf_counter() - start) / iters * 1e3)
    return {key: statistics.median(t) for key, t in times.items()}


def report(ms: dict[tuple[str, int], float], info: dict[str, Any], batches: list[int]) -> dict[str, Any]:
    peak = 2 * MATMUL**3 / ms["fp32 matmul 2048", 1] / 1e6
    out: dict[str, Any] = {"fp32 matmul GFLOP/s (practical peak)": round(peak, 1)}
    rows = []
    for name in dict.fromkeys(key for key, _ in ms):
        if name.startswith("fp32 matmul"):
            continue
        task = name.split()[0]
        macs = info["macs"][f"{task} {'torchvision' if 'torchvision' in name else 'ours'}"]
        row: dict[str, Any] = {"model": name, "GMACs": round(macs / 1e9, 3)}
        for n in batches:
            row[f"batch {n} ms"] = round(ms[name, n], 2)
            gflops = 2 * macs * n / ms[name, n] / 1e6
            row[f"batch {n} GFLOP/s"] = round(gflops, 1)
            row[f"batch {n} % of peak"] = round(100 * gflops / peak, 1)
        rows.append(row)
    out["table"] = rows
    ratios = {}
    for task in ("detection", "segmentation"):
        peer = f"{task} torchvision eager"
        for runtime in ("eager", "onnxruntime fp32", "onnxruntime int8"):
            target = TARGETS.get(f"{task} {runtime.split()[-1]}")
            for n in batches:
                ratio = ms[f"{task} ours {runtime}", n] / ms[peer, n]
                met = None if target is None else ratio <= target
                ratios[f"{task} ours {runtime} / torchvision eager, batch {n}"] = {
                    "ratio": round(ratio, 3),
                    "target": target,
                    "met": met,
                }
    out["ratios"] = ratios
    return out | {k: v for k, v in info.items() if k != "macs"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of idle before each timed block")
    parser.add_argument("--candidates", type=int, default=300, help="(anchor, class) pairs above the score threshold")
    parser.add_argument("--calibration-images", type=Path, default=CALIBRATION, help="images for int8 calibration")
    parser.add_argument("--calibration-count", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    header: dict[str, Any] = {
        "machine": f"{machine}, {torch.get_num_threads()} threads",
        "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {ort.__version__}",
    }
    with tempfile.TemporaryDirectory() as folder:
        entries, info = runners(args, Path(folder))
        load = os.getloadavg()[0]
        ms = latency(entries, args.rounds, args.iters, args.pause)
    # other processes' load on a shared machine, for the record: torch's thread pool suffers more from it than
    # onnxruntime's does, so compare runs made with little load (or with --threads 1)
    header["load average (1 min) before / after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    result: dict[str, Any] = header | report(ms, info, args.batches)
    if args.json:
        print(json.dumps(result))
        return
    for key in (*header, "fp32 matmul GFLOP/s (practical peak)"):
        print(f"{key}: {result[key]}")
    columns = list(result["table"][0])
    print(" | ".join(columns))
    for row in result["table"]:
        print(" | ".join(str(row[c]) for c in columns))
    for key, value in result["ratios"].items():
        target = value["target"]
        verdict = "" if target is None else f"  (target <= {target}: {'met' if value['met'] else 'MISSED'})"
        print(f"{key:<70} {value['ratio']}{verdict}")
    for key, value in result.items():
        if key not in (*header, "fp32 matmul GFLOP/s (practical peak)", "table", "ratios"):
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
