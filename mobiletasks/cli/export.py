"""``mobiletasks export``: a model to ONNX, from a checkpoint, a config or a model name.

Examples:
    mobiletasks export --ckpt_path runs/quickstart/checkpoints/last.ckpt --output ssdlite.onnx
    mobiletasks export --model ssdlite_mobilenet_v2 num_classes=80 --input-size 320 --output ssdlite.onnx
    mobiletasks export --config configs/detection/quickstart.yaml --ckpt_path last.ckpt --output q.onnx --int8 \\
        --calibration-images data/shapes/train
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("mobiletasks.export")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobiletasks export",
        description="Export a model with its pre- and post-processing to ONNX (docs/deploy.md).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", help="a .ckpt of a mobiletasks run")
    source.add_argument("--config", help="a LightningCLI YAML config: its model and data (with --weights or none)")
    source.add_argument(
        "--model", help="a registered model name (mobiletasks list models), its arguments as KEY=VALUE after it"
    )
    p.add_argument("kwargs", nargs="*", metavar="KEY=VALUE", help="builder arguments of --model (YAML values)")
    p.add_argument("--weights", help="with --model or --config: a weights file or .ckpt to load into the model")
    p.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--task", choices=["classification", "attributes", "detection", "segmentation"])
    p.add_argument("--input-size", type=int, help="square input side (default: the model's or the run's)")
    p.add_argument("--class-names", help="comma-separated class names (default: the run's, else class_0, ...)")
    p.add_argument("--static-batch", action="store_true", help="batch size fixed to 1 (default: dynamic)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: mobiletasks.deploy.onnx.OPSET)")
    p.add_argument("--int8", action="store_true", help="also write <output>.int8.onnx: static int8 quantization")
    p.add_argument("--calibration-images", help="with --int8: a folder of training images to calibrate on")
    p.add_argument("--calibration-count", type=int, default=64, help="with --int8: images used (default 64)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _kwargs(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"model argument {pair!r} is not KEY=VALUE, e.g. num_classes=80 or width_mult=0.75")
        out[key] = yaml.safe_load(value)
    return out


def _from_config(config: str) -> tuple[Any, dict[str, Any]]:
    """The task and data module a config builds (LightningCLI, nothing run), and what the data module says."""
    from .lightning import build_cli

    cli = build_cli(["--config", config], run=False)
    task, datamodule = cli.model, cli.datamodule
    record = {**task.deploy_record(), "model": task.hparams.get("model", "")}
    for key in ("class_names", "category_ids", "crop_fraction", "image_size"):
        value = getattr(datamodule, key, None)
        if value is not None:
            record[key] = value
    return task, record


def build(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The model to export and what is known about it (kind, class names, ...)."""
    from ..factory import create_model
    from ..tasks.checkpoint import load_task

    if args.kwargs and not args.model:
        raise ValueError(f"KEY=VALUE arguments {args.kwargs} go with --model only")
    if args.ckpt_path:
        task, record = load_task(args.ckpt_path)
        record.setdefault("model", task.hparams.get("model", ""))
        return task.model, record
    if args.config:
        task, record = _from_config(args.config)
        model = task.model
    else:
        model = create_model(args.model, **_kwargs(args.kwargs))
        record = {"model": args.model}
    if args.weights:
        from ..weights import load_pretrained

        load_pretrained(model, args.weights, args.model or "")
    else:
        warnings.warn(
            "exporting without trained weights (no --ckpt_path or --weights): the file is good for benchmarking "
            "and checking, not for predictions",
            stacklevel=1,
        )
    return model, record


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"mobiletasks export: error: {err}")
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..deploy.graphs import TASKS
    from ..deploy.onnx import OPSET, export_onnx

    output = Path(args.output)
    int8_output = output.with_suffix(".int8.onnx")
    if args.int8 and not args.calibration_images:
        raise ValueError("--int8 calibrates on training images: add --calibration-images DIR")
    for path in [output, *([int8_output] if args.int8 else [])]:
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --output")
    model, record = build(args)
    kind = args.task or (record.get("kind") if record.get("kind") in TASKS else None)
    names = args.class_names.split(",") if args.class_names else record.get("class_names") or []
    size = args.input_size or record.get("image_size")
    info = export_onnx(
        model,
        output,
        task=kind,
        input_size=size,
        class_names=names,
        dynamic_batch=not args.static_batch,
        crop_fraction=float(record.get("crop_fraction") or 0.875),
        category_ids=record.get("category_ids"),
        model_name=str(record.get("model") or ""),
        opset=args.opset or OPSET,
    )
    print(
        f"wrote {output}: {info.task}, input {info.input_size[0]}x{info.input_size[1]}, {len(info.class_names)} names"
    )
    if args.int8:
        from ..deploy.quantize import quantize_int8

        quantize_int8(output, int8_output, args.calibration_images, count=args.calibration_count)
        print(f"wrote {int8_output}: int8 (static, calibrated on {args.calibration_images})")
    return 0
