"""Deployment on the CPU, in one run: eager PyTorch, onnxruntime fp32 and int8, LiteRT fp32 and int8 and
ExecuTorch fp32 and int8 of ours against torchvision's peers in eager mode, as their users run them.

- detection: ``ssdlite_mobilenet_v2`` (80 classes, 320x320) against ``ssdlite320_mobilenet_v3_large``;
- segmentation: ``deeplabv3_mobilenet_v2`` (output stride 16, no ASPP, 21 classes, 513x513) against
  ``deeplabv3_mobilenet_v3_large``.

Every model has random weights and random BatchNorm statistics. Ours runs eager (``model(images)`` under
``torch.inference_mode()``, resizing, normalization and post-processing inside) and as exported files through
``mobiletasks.deploy.load_predictor`` with the same threads: the files of ``export_onnx`` and ``quantize_int8``
(onnxruntime; the same steps inside the graph), of ``export_litert`` (``.tflite``, LiteRT's interpreter with
XNNPACK; int8 by ai-edge-quantizer, full int8) and of ``export_executorch`` (``.pte`` lowered to XNNPACK; int8 by
PT2E with the XNNPACK quantizer). The mobile files hold the network alone at a fixed [1, 3, H, W] input: their
predictor resizes each image to it first and runs a detector's post-processing (``DetectionPostprocess``, in
PyTorch) after it, and the timings include both, as the onnxruntime timings include theirs. Every int8 file is
calibrated on the same ``--calibration-count`` coco128 train images. torchvision's models run eager with their own
preprocessing (the detector's inside, the segmenter's normalization before it) and the same thread count.
Batches of 1 and 8 images (the mobile files at batch 1 only: they take one image at a time), models timed in
interleaved rounds with a short pause before each (``latency``), medians; the ratios (ours / torchvision) are the
result, and the size of every exported file is reported beside them. ExecuTorch's thread pool is one per process,
set by its predictors to the same thread count.

``--runtimes`` picks which of ours run (torchvision's always do, as the reference): LiteRT and ExecuTorch need
the ``mobile`` extra, and are skipped with a note when it is not installed and they were not asked for by name.

A detector's post-processing costs what the number of (anchor, class) pairs above its score threshold makes it
cost, and random weights put every pair above 0.001. Each detector's background logit is therefore raised by the
bias that leaves ``--candidates`` pairs (a trained detector's few hundred) above its own score threshold (0.001 for
both) on the benchmark image, so both run NMS on the same number of candidates.

Speed against the machine: GFLOP/s = 2 x MACs x batch / latency, MACs those of one image through the network
(convolutions and matrix products, ``mobiletasks.model_summary``; resizing and post-processing not counted), set
against the GFLOP/s of an fp32 ``torch.mm`` of two 2048x2048 matrices with the same threads in the same rounds,
this CPU's practical peak. int8 runs count the same MACs (as int8 operations).

    python benchmarks/deploy.py [--rounds 10] [--iters 2] [--threads N] [--candidates 300] [--pause 0.05]
        [--runtimes eager,onnxruntime,litert,executorch] [--json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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
from mobiletasks.deploy import Predictor, export_onnx, load_predictor
from mobiletasks.deploy.executorch import export_executorch
from mobiletasks.deploy.litert import export_litert
from mobiletasks.deploy.mobile import EXTRA, SUFFIXES
from mobiletasks.deploy.quantize import quantize_int8

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = COCO128 / "images" / "train2017"
DET_SIZE, SEG_SIZE = 320, 513
MATMUL = 2048
Calls = dict[str, dict[int, Callable[[], object]]]  # per entry, per batch size: one call to time
RUNTIMES = ("eager", "onnxruntime", "litert", "executorch")
FILE_RUNTIMES = RUNTIMES[1:]
# the mobile runtimes' modules (to tell whether the extra is installed) and packages (versions, in the header)
MOBILE = {"litert": ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"), "executorch": ("executorch",)}
PACKAGES = {"litert": ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"), "executorch": ("executorch",)}
# the targets: latency ours / torchvision eager
TARGETS = {
    "detection onnxruntime fp32": 0.5,
    "detection onnxruntime int8": 0.35,
    "segmentation onnxruntime fp32": 0.3,
    "segmentation onnxruntime int8": 0.3,
}
MOBILE_TARGET = 0.3  # detection int8 on the faster of LiteRT and ExecuTorch / torchvision eager, batch 1


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


def select_runtimes(requested: str | None) -> tuple[list[str], list[str]]:
    """The runtimes of ours to run and those skipped: all by default, less LiteRT and ExecuTorch when their
    packages are missing; ones asked for by name must be there.

    Raises:
        SystemExit: an unknown runtime, or one asked for whose packages are missing.
    """
    names = list(RUNTIMES) if requested is None else [r.strip() for r in requested.split(",") if r.strip()]
    unknown = [r for r in names if r not in RUNTIMES]
    if unknown:
        raise SystemExit(f"--runtimes: unknown {', '.join(unknown)}; choose from {','.join(RUNTIMES)}")
    missing = [r for r in names if any(importlib.util.find_spec(m) is None for m in MOBILE.get(r, ()))]
    if missing and requested is not None:
        raise SystemExit(f"--runtimes {','.join(missing)}: the packages of the mobile extra are missing: {EXTRA}")
    return [r for r in names if r not in missing], missing


def export_files(
    runtime: str, model: nn.Module, size: int, folder: Path, name: str, args: argparse.Namespace
) -> dict[str, Path]:
    """The fp32 and int8 files of ``model`` for ``runtime``, every int8 calibrated on the same images."""
    suffix = SUFFIXES["onnx" if runtime == "onnxruntime" else runtime]
    files = {"fp32": folder / f"{name}{suffix}", "int8": folder / f"{name}.int8{suffix}"}
    if runtime == "onnxruntime":
        export_onnx(model, files["fp32"], input_size=size)
        quantize_int8(files["fp32"], files["int8"], args.calibration_images, count=args.calibration_count)
    else:
        export = export_litert if runtime == "litert" else export_executorch
        export(
            model,
            files["fp32"],
            input_size=size,
            int8_path=files["int8"],
            calibration_images=args.calibration_images,
            calibration_count=args.calibration_count,
        )
    return files


def predictors(
    tasks: dict[str, tuple[nn.Module, int]], folder: Path, args: argparse.Namespace, info: dict[str, Any]
) -> dict[str, Predictor]:
    """Per entry (``"detection ours litert int8"``) the predictor of its exported file; file sizes (MB) and
    export times (s) go into ``info``."""
    threads = torch.get_num_threads()
    loaded: dict[str, Predictor] = {}
    for runtime in (r for r in args.runtimes if r in FILE_RUNTIMES):
        for task, (model, size) in tasks.items():
            start = time.perf_counter()
            files = export_files(runtime, model, size, folder, task, args)
            info["export s (fp32 and int8)"][f"{task} {runtime}"] = round(time.perf_counter() - start, 1)
            for precision, path in files.items():
                info["file MB"][f"{task} {runtime} {precision}"] = round(path.stat().st_size / 1e6, 2)
                loaded[f"{task} ours {runtime} {precision}"] = load_predictor(path, threads=threads)
    return loaded


def runners(args: argparse.Namespace, folder: Path) -> tuple[Calls, dict[str, Any]]:
    """Per entry and batch size a call to time, and what the report needs to know (MACs, candidate counts, file
    sizes)."""
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
        "file MB": {},
        "export s (fp32 and int8)": {},
    }
    tasks = {"detection": (ours_det, DET_SIZE), "segmentation": (ours_seg, SEG_SIZE)}
    files = predictors(tasks, folder, args, info)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # torchvision's segmentation preprocessing
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def tv_segment(batch: Tensor) -> Tensor:
        return tv_seg((batch - mean) / std)["out"]

    entries: Calls = {}
    for n in args.batches:
        det_list = [det_image] * n
        seg_batch = seg_image.expand(n, -1, -1, -1).contiguous()
        arrays = {"detection": torch.stack(det_list).numpy(), "segmentation": seg_batch.numpy()}
        calls: dict[str, Callable[[], object]] = {}
        models: dict[str, tuple[Callable[[Any], object], Callable[[Any], object], Any]] = {
            "detection": (ours_det, tv_det, det_list),
            "segmentation": (ours_seg, tv_segment, seg_batch),
        }
        for task, (ours, peer, images) in models.items():
            if "eager" in args.runtimes:
                calls[f"{task} ours eager"] = partial(ours, images)
            for name, predictor in files.items():
                if name.startswith(task) and (n == 1 or "onnxruntime" in name):  # mobile files: one image a call
                    calls[name] = partial(predictor, arrays[task])
            calls[f"{task} torchvision eager"] = partial(peer, images)
        for name, call in calls.items():
            entries.setdefault(name, {})[n] = call
    a, b = torch.rand(MATMUL, MATMUL, generator=g), torch.rand(MATMUL, MATMUL, generator=g)
    entries["fp32 matmul 2048"] = {1: lambda: torch.mm(a, b)}
    with torch.inference_mode():
        counts = {"ours eager": len(ours_det([det_image])[0]["boxes"])} if "eager" in args.runtimes else {}
        for name, predictor in files.items():
            if name.startswith("detection"):
                counts[name.removeprefix("detection ")] = len(predictor(det_image[None].numpy())[0]["boxes"])
        counts["torchvision eager"] = len(tv_det([det_image])[0]["boxes"])
    info["detections"] = counts
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


def ratio_entry(ratio: float, target: float | None, **extra: Any) -> dict[str, Any]:
    return {"ratio": round(ratio, 3), "target": target, "met": None if target is None else ratio <= target, **extra}


def ratios(ms: dict[tuple[str, int], float], batches: list[int]) -> dict[str, dict[str, Any]]:
    """Latency of each of ours / torchvision's eager peer per batch size, with the targets; and the target of the
    faster int8 mobile detector at batch 1."""
    out = {}
    for task in ("detection", "segmentation"):
        peer = f"{task} torchvision eager"
        for name in dict.fromkeys(key for key, _ in ms):
            if not name.startswith(f"{task} ours "):
                continue
            runtime = name.removeprefix(f"{task} ours ")
            for n in batches:
                if (name, n) in ms:
                    target = TARGETS.get(f"{task} {runtime}")
                    out[f"{name} / torchvision eager, batch {n}"] = ratio_entry(ms[name, n] / ms[peer, n], target)
    mobile = {r: ms[f"detection ours {r} int8", 1] for r in MOBILE if (f"detection ours {r} int8", 1) in ms}
    if mobile:
        fastest = min(mobile, key=mobile.__getitem__)
        key = f"detection ours int8, faster of {' and '.join(mobile)} / torchvision eager, batch 1"
        out[key] = ratio_entry(mobile[fastest] / ms["detection torchvision eager", 1], MOBILE_TARGET, runtime=fastest)
    return out


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
            measured = (name, n) in ms
            gflops = 2 * macs * n / ms[name, n] / 1e6 if measured else None
            row[f"batch {n} ms"] = round(ms[name, n], 2) if measured else None
            row[f"batch {n} GFLOP/s"] = None if gflops is None else round(gflops, 1)
            row[f"batch {n} % of peak"] = None if gflops is None else round(100 * gflops / peak, 1)
        rows.append(row)
    out["table"] = rows
    out["ratios"] = ratios(ms, batches)
    return out | {k: v for k, v in info.items() if k != "macs"}


def versions(runtimes: list[str]) -> str:
    found = [f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    if "onnxruntime" in runtimes:
        found.append(f"onnxruntime {ort.__version__}")
    found += [f"{p} {importlib.metadata.version(p)}" for r in runtimes for p in PACKAGES.get(r, ())]
    return ", ".join(found)


def cpu() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    except OSError:
        names = []
    machine = f"{platform.machine()} {names[0] if names else platform.processor() or ''}".strip()
    return f"{machine}, {os.cpu_count()} cores"


def show(result: dict[str, Any], header: dict[str, Any]) -> None:
    """The result as text: header, table, ratios with their targets, file sizes, the rest."""
    for key in (*header, "fp32 matmul GFLOP/s (practical peak)"):
        print(f"{key}: {result[key]}")
    columns = list(result["table"][0])
    print(" | ".join(columns))
    for row in result["table"]:
        print(" | ".join("-" if row[c] is None else str(row[c]) for c in columns))
    for key, value in result["ratios"].items():
        target, runtime = value["target"], f" ({value['runtime']})" if "runtime" in value else ""
        verdict = "" if target is None else f"  (target <= {target}: {'met' if value['met'] else 'MISSED'})"
        print(f"{key:<80} {value['ratio']}{runtime}{verdict}")
    for key, size in result["file MB"].items():
        print(f"file MB, {key:<32} {size}")
    for key, value in result.items():
        if key not in (*header, "fp32 matmul GFLOP/s (practical peak)", "table", "ratios", "file MB"):
            print(f"{key}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=None, help="torch and runtime threads (default: torch's)")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of idle before each timed block")
    parser.add_argument("--candidates", type=int, default=300, help="(anchor, class) pairs above the score threshold")
    parser.add_argument("--calibration-images", type=Path, default=CALIBRATION, help="images for int8 calibration")
    parser.add_argument("--calibration-count", type=int, default=32)
    parser.add_argument(
        "--runtimes", default=None, help=f"which of ours to run, comma-separated (default: all, {','.join(RUNTIMES)})"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.runtimes, skipped = select_runtimes(args.runtimes)
    if skipped:
        print(f"skipping {' and '.join(skipped)}: not installed ({EXTRA})", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    header: dict[str, Any] = {
        "machine": f"{cpu()}, {torch.get_num_threads()} threads",
        "versions": versions(args.runtimes),
    }
    with tempfile.TemporaryDirectory() as folder:
        entries, info = runners(args, Path(folder))
        load = os.getloadavg()[0]
        ms = latency(entries, args.rounds, args.iters, args.pause)
    # other processes' load on a shared machine, for the record: torch's thread pool suffers more from it than
    # onnxruntime's does, so compare runs made with little load (or with --threads 1)
    header["load average (1 min) before / after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    result: dict[str, Any] = header | report(ms, info, args.batches) | {"skipped runtimes": skipped}
    if args.json:
        print(json.dumps(result))
        return
    show(result, header)


if __name__ == "__main__":
    main()
