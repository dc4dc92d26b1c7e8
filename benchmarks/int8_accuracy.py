"""What static int8 quantization costs in accuracy: a trained checkpoint scored on its val split eager, and for
each of ``--formats`` (default all three) as its float export and its int8 file, in one run:

- ``onnx``: ``export_onnx`` and ``mobiletasks.deploy.quantize.quantize_int8`` (onnxruntime);
- ``litert``: ``export_litert`` (LiteRT, int8 with ai-edge-quantizer);
- ``executorch``: ``export_executorch`` (ExecuTorch with XNNPACK, int8 with PT2E and the XNNPACK quantizer).

LiteRT and ExecuTorch need the mobile extra (``pip install "mobiletasks[mobile]"``); without it they are
skipped with a line saying so. The config gives the data module: its val split and its evaluator (COCO mAP
through pycocotools for detection, mIoU for segmentation, top-1/top-5 accuracy for classification), and the
training split's images calibrate the int8 files (``--calibration-count`` of them, evenly spaced; ``--method``
and ``--float-last`` are ONNX's). Every model sees the val images as the data module gives them, one at a time;
exported files run through ``load_predictor``'s predictor on the CPU.

Each int8 file is also compared with its own float file on the same images (agreement): for detection the mean
over images of the mean best IoU of the float file's top-10 boxes with the int8 file's boxes of the same label
(0 where it has none), and the share of images whose top-1 label (that of the best-scored box) the int8 file
reproduces, over the images where the float file finds a box; for segmentation the share of pixels whose
argmax class agrees; for classification the share of images whose top-1 class agrees.

    python benchmarks/int8_accuracy.py --config configs/detection/quickstart.yaml \\
        --ckpt runs/quickstart/checkpoints/last.ckpt [--calibration-count 64] [--method minmax] [--json]
    python benchmarks/int8_accuracy.py --config configs/segmentation/quickstart.yaml \\
        --ckpt runs/segmentation_quickstart/checkpoints/last.ckpt

Run it from the folder the config's relative data paths start from (the repository root for the shipped
configs); other arguments go to the config as LightningCLI takes them, e.g. coco128's training images as the val
split for a model overfit on them (``benchmarks/detection.py --overfit``):

    python benchmarks/int8_accuracy.py --config configs/detection/ssdlite_mobilenet_v2_coco.yaml \\
        --ckpt runs/benchmarks/runs/overfit/checkpoints/last.ckpt --data.init_args.root data/coco128 \\
        --data.init_args.train_images images/train2017 \\
        --data.init_args.train_annotations annotations/instances_train2017.json \\
        --data.init_args.val_images images/train2017 \\
        --data.init_args.val_annotations annotations/instances_train2017.json

``--float-last`` keeps the last convolutions of the ONNX int8 file (logits, a detector's predictors) in float.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou
from tqdm import tqdm

from mobiletasks.cli.lightning import build_cli
from mobiletasks.deploy import Predictor, export_onnx, load_predictor
from mobiletasks.deploy.mobile import SUFFIXES, require
from mobiletasks.deploy.quantize import quantize_int8
from mobiletasks.tasks.checkpoint import load_task

Predict = Callable[[Tensor], Any]  # an image [3, H, W] in [0, 1] -> the eager model's output for it
FORMATS = {"onnx": "onnxruntime", "litert": "litert", "executorch": "executorch"}  # --formats -> runtime's name
# the Python packages each export and its predictor import (the mobile extra's)
PACKAGES = {
    "onnx": (),
    "litert": ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
    "executorch": ("executorch", "torchao"),
}


def eager(model: nn.Module, kind: str) -> Predict:
    def predict(image: Tensor) -> Any:
        if kind == "detection":
            return model([image])[0]
        if kind == "segmentation":
            return model(image[None])["out"]
        return model(image[None])

    return predict


def exported(predictor: Predictor, kind: str) -> Predict:
    def predict(image: Tensor) -> Any:
        out = predictor(image[None].numpy())
        if kind == "detection":
            return {key: torch.from_numpy(value) for key, value in out[0].items()}
        return torch.from_numpy(out)

    return predict


def compact(out: Any, kind: str) -> Any:
    """What agreement compares of an output: a detector's boxes, labels and scores; a segmenter's argmax classes
    [H, W]; a classifier's top-1 class."""
    if kind == "detection":
        return {key: out[key] for key in ("boxes", "labels", "scores")}
    if kind == "segmentation":
        return out[0].argmax(0).to(torch.uint8)
    return int(out[0].argmax())


def score(predict: Predict, datamodule: Any, kind: str, limit: int | None) -> tuple[dict[str, float], float, list[Any]]:
    """The evaluator's metrics of ``predict`` over the val split, milliseconds per image, and each readable
    image's output as :func:`compact` keeps it."""
    dataset = datamodule.dataset("val")
    evaluator = datamodule.evaluator("val")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    seconds = 0.0
    outputs = []
    with torch.inference_mode():
        for index in tqdm(range(count), desc="val images", leave=False):
            sample = dataset[index]
            if sample is None:  # unreadable: the evaluator's own rule, as in validation
                continue
            image, target = sample
            start = time.perf_counter()
            out = predict(image)
            seconds += time.perf_counter() - start
            if kind == "detection":
                evaluator.update([out], [target])
            elif kind == "segmentation":
                evaluator.update(out, target["mask"][None])
            else:
                evaluator.update(out, target["labels"].reshape(1))
            outputs.append(compact(out, kind))
    metrics = evaluator.compute()
    return metrics, seconds / count * 1e3, outputs


def agreement(fp32: list[Any], int8: list[Any], kind: str) -> dict[str, float]:
    """How well an int8 file reproduces its float file's outputs on the same images (see the description)."""
    if kind == "segmentation":
        same = sum(int((a == b).sum()) for a, b in zip(fp32, int8, strict=True))
        return {"pixel agreement": round(same / max(sum(a.numel() for a in fp32), 1), 4)}
    if kind == "classification":
        return {"top1 agreement": round(sum(a == b for a, b in zip(fp32, int8, strict=True)) / max(len(fp32), 1), 4)}
    best_ious, same_top1 = [], []
    for a, b in zip(fp32, int8, strict=True):
        if not len(a["boxes"]):
            continue  # nothing to reproduce
        top = a["scores"].argsort(descending=True)[:10]
        boxes, labels = a["boxes"][top], a["labels"][top]
        iou = box_iou(boxes, b["boxes"]) * (labels[:, None] == b["labels"][None, :])
        best_ious.append(float(iou.max(dim=1).values.mean()) if len(b["boxes"]) else 0.0)
        same_top1.append(len(b["boxes"]) > 0 and int(b["labels"][b["scores"].argmax()]) == int(labels[0]))
    count = max(len(best_ious), 1)
    return {
        "mean best IoU of fp32 top-10": round(sum(best_ious) / count, 4),
        "top1 label agreement": round(sum(same_top1) / count, 4),
        "images with fp32 boxes": len(best_ious),
    }


def export(
    fmt: str,
    model: nn.Module,
    folder: Path,
    options: dict[str, Any],
    calibration: list[Path],
    args: argparse.Namespace,
) -> tuple[Path, Path]:
    """Write ``model`` in ``fmt`` as float and int8 files in ``folder``; their paths."""
    fp32, int8 = folder / f"model{SUFFIXES[fmt]}", folder / f"model.int8{SUFFIXES[fmt]}"
    if fmt == "onnx":
        export_onnx(model, fp32, **options)
        quantize_int8(
            fp32, int8, calibration, count=args.calibration_count, method=args.method, float_last=args.float_last
        )
        return fp32, int8
    if fmt == "litert":
        from mobiletasks.deploy.litert import export_litert as export_mobile
    else:
        from mobiletasks.deploy.executorch import export_executorch as export_mobile
    export_mobile(
        model, fp32, **options, int8_path=int8, calibration_images=calibration, calibration_count=args.calibration_count
    )
    return fp32, int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument("--ckpt", required=True, help="a checkpoint of mobiletasks fit")
    parser.add_argument("--formats", default="onnx,litert,executorch", help="comma separated: onnx, litert, executorch")
    parser.add_argument("--calibration-count", type=int, default=64)
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"], help="ONNX's")
    parser.add_argument("--float-last", action="store_true", help="keep the ONNX int8 file's last convolutions float")
    parser.add_argument("--limit", type=int, default=None, help="score the first N val images only")
    parser.add_argument("--threads", type=int, default=None, help="torch's and the runtimes' threads")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the exported files here (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args, overrides = parser.parse_known_args()  # the rest, e.g. --data.init_args.root DIR, goes to the config
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        parser.error(f"--formats {args.formats!r}: expected some of {', '.join(FORMATS)}")
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    task, record = load_task(args.ckpt)
    model = cast(nn.Module, task.model)
    kind = record["kind"]
    if kind not in ("detection", "segmentation", "classification"):
        raise SystemExit(
            f"{args.ckpt} is a {kind} checkpoint; this script scores detection, segmentation and classification"
        )
    skipped: dict[str, str] = {}
    for fmt in list(formats):
        try:
            require(*PACKAGES[fmt], runtime=fmt)
        except ImportError as err:
            print(f"skipping {fmt}: {err}", file=sys.stderr)  # the message names the mobile extra's pip install
            skipped[fmt] = str(err)
            formats.remove(fmt)
    datamodule = build_cli(["--config", args.config, *overrides], run=False).datamodule
    datamodule.prepare_data()
    train = datamodule.dataset("train")
    calibration = list(train.paths) if kind == "classification" else [r.path for r in train.records]
    options: dict[str, Any] = {
        "task": kind,
        "input_size": record.get("image_size"),
        "class_names": record.get("class_names") or (),
        "crop_fraction": float(record.get("crop_fraction") or 0.875),
        "category_ids": record.get("category_ids"),
        "model_name": str(record.get("model") or ""),
    }
    threads = torch.get_num_threads()
    report: dict[str, Any] = {
        "checkpoint": str(args.ckpt),
        "machine": f"{platform.machine()}, {threads} threads",
        "formats": formats,
        "skipped": skipped,
        "calibration": f"{min(args.calibration_count, len(calibration))} of {len(calibration)} training images; "
        f"ONNX: {args.method}, float last layers: {args.float_last}; LiteRT: ai-edge-quantizer static_wi8_ai8 "
        "(min/max); ExecuTorch: PT2E XNNPACK quantizer (symmetric, per channel)",
        "export + int8 seconds": {},
        "file MB fp32 / int8": {},
    }
    keys = {
        "detection": ("map", "map_50", "map_75"),
        "segmentation": ("miou", "pixel_acc"),
        "classification": ("top1", "top5"),
    }[kind]

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        runs: dict[str, Predict] = {"eager": eager(model.eval(), kind)}
        for fmt in formats:
            start = time.perf_counter()
            fp32, int8 = export(fmt, model, folder, options, calibration, args)
            report["export + int8 seconds"][fmt] = round(time.perf_counter() - start, 1)
            report["file MB fp32 / int8"][fmt] = [round(p.stat().st_size / 2**20, 2) for p in (fp32, int8)]
            for precision, path in (("fp32", fp32), ("int8", int8)):
                runs[f"{FORMATS[fmt]} {precision}"] = exported(load_predictor(path, threads=threads), kind)
        outputs: dict[str, list[Any]] = {}
        for name, predict in runs.items():
            metrics, ms, outputs[name] = score(predict, datamodule, kind, args.limit)
            report[name] = {key: round(metrics[key], 4) for key in keys if key in metrics} | {"ms/image": round(ms, 2)}
    for fmt in formats:
        fp32, int8 = report[f"{FORMATS[fmt]} fp32"], report[f"{FORMATS[fmt]} int8"]
        report[f"{FORMATS[fmt]} int8 - fp32"] = {key: round(int8[key] - fp32[key], 4) for key in keys if key in fp32}
        fp32_out, int8_out = outputs[f"{FORMATS[fmt]} fp32"], outputs[f"{FORMATS[fmt]} int8"]
        report[f"{FORMATS[fmt]} int8 agreement with fp32"] = agreement(fp32_out, int8_out, kind)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<36} {value}")


if __name__ == "__main__":
    main()
