"""What static int8 quantization costs in accuracy: a trained checkpoint scored on its val split eager, as its
ONNX export (fp32) and as the int8 file of ``mobiletasks.deploy.quantize.quantize_int8``, in one run.

The config gives the data module: its val split and its evaluator (COCO mAP through pycocotools for detection,
mIoU for segmentation), and the training split's images calibrate the int8 file (``--calibration-count`` of them,
evenly spaced). Every model sees the val images as the data module gives them, one at a time; ONNX files run
through ``OnnxPredictor`` on the CPU.

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

``--float-last`` keeps the last convolutions (logits, a detector's predictors) in float.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from tqdm import tqdm

from mobiletasks.cli.lightning import build_cli
from mobiletasks.deploy import OnnxPredictor, export_onnx
from mobiletasks.deploy.quantize import quantize_int8
from mobiletasks.tasks.checkpoint import load_task

Predict = Callable[[Tensor], Any]  # an image [3, H, W] in [0, 1] -> the eager model's output for it


def eager(model: nn.Module, kind: str) -> Predict:
    def predict(image: Tensor) -> Any:
        if kind == "detection":
            return model([image])[0]
        return model(image[None])["out"]

    return predict


def onnx(predictor: OnnxPredictor, kind: str) -> Predict:
    def predict(image: Tensor) -> Any:
        out = predictor(image[None].numpy())
        if kind == "detection":
            return {key: torch.from_numpy(value) for key, value in out[0].items()}
        return torch.from_numpy(out)

    return predict


def score(predict: Predict, datamodule: Any, kind: str, limit: int | None) -> tuple[dict[str, float], float]:
    """The evaluator's metrics of ``predict`` over the val split, and milliseconds per image."""
    dataset = datamodule.dataset("val")
    evaluator = datamodule.evaluator("val")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    seconds = 0.0
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
            else:
                evaluator.update(out, target["mask"][None])
    metrics = evaluator.compute()
    return metrics, seconds / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument("--ckpt", required=True, help="a checkpoint of mobiletasks fit")
    parser.add_argument("--calibration-count", type=int, default=64)
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    parser.add_argument("--float-last", action="store_true", help="keep the last convolutions in float")
    parser.add_argument("--limit", type=int, default=None, help="score the first N val images only")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the ONNX files here (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args, overrides = parser.parse_known_args()  # the rest, e.g. --data.init_args.root DIR, goes to the config
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    task, record = load_task(args.ckpt)
    model = cast(nn.Module, task.model)
    kind = record["kind"]
    if kind not in ("detection", "segmentation"):
        raise SystemExit(f"{args.ckpt} is a {kind} checkpoint; this script scores detection and segmentation")
    datamodule = build_cli(["--config", args.config, *overrides], run=False).datamodule
    datamodule.prepare_data()
    calibration = [r.path for r in datamodule.dataset("train").records]

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
        export_onnx(
            model,
            fp32,
            task=kind,
            input_size=record.get("image_size"),
            class_names=record.get("class_names") or (),
            category_ids=record.get("category_ids"),
        )
        start = time.perf_counter()
        quantize_int8(
            fp32, int8, calibration, count=args.calibration_count, method=args.method, float_last=args.float_last
        )
        quantize_seconds = time.perf_counter() - start
        threads = torch.get_num_threads()
        runs = {
            "eager": eager(model.eval(), kind),
            "onnxruntime fp32": onnx(OnnxPredictor(fp32, threads=threads), kind),
            "onnxruntime int8": onnx(OnnxPredictor(int8, threads=threads), kind),
        }
        report: dict[str, Any] = {
            "checkpoint": str(args.ckpt),
            "machine": f"{platform.machine()}, {threads} threads",
            "calibration": f"{min(args.calibration_count, len(calibration))} of {len(calibration)} training images, "
            f"{args.method}, float last layers: {args.float_last}",
            "quantization seconds": round(quantize_seconds, 1),
            "file MB fp32 / int8": [round(p.stat().st_size / 2**20, 2) for p in (fp32, int8)],
        }
        keys = ("map", "map_50", "map_75") if kind == "detection" else ("miou", "pixel_acc")
        for name, predict in runs.items():
            metrics, ms = score(predict, datamodule, kind, args.limit)
            report[name] = {key: round(metrics[key], 4) for key in keys} | {"ms/image": round(ms, 2)}
    for key in keys:
        report[f"{key} int8 - fp32"] = round(report["onnxruntime int8"][key] - report["onnxruntime fp32"][key], 4)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<28} {value}")


if __name__ == "__main__":
    main()
