"""``mobiletasks export``: a model to ONNX, LiteRT (``.tflite``) or ExecuTorch (``.pte``), from a checkpoint, a
config or a model name.

Examples:
    mobiletasks export --ckpt_path runs/quickstart/checkpoints/last.ckpt --output ssdlite.onnx
    mobiletasks export --model ssdlite_mobilenet_v2 num_classes=80 --input-size 320 --output ssdlite.onnx
    mobiletasks export --config configs/detection/quickstart.yaml --ckpt_path last.ckpt --output q.onnx --int8 \\
        --calibration-images data/shapes/train
    mobiletasks export --ckpt_path last.ckpt --format litert --output ssdlite.tflite --int8 --calibration-images DIR
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path
from typing import Any

import yaml

from ..deploy.predictor import SUFFIXES

log = logging.getLogger("mobiletasks.export")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobiletasks export",
        description=(
            "Export a model with its pre- and post-processing to ONNX, or its network to LiteRT or ExecuTorch for "
            "phones (docs/deploy.md)."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", help="a .ckpt of a mobiletasks run")
    source.add_argument("--config", help="a LightningCLI YAML config: its model and data (with --weights or none)")
    source.add_argument(
        "--model", help="a registered model name (mobiletasks list models), its arguments as KEY=VALUE after it"
    )
    p.add_argument("kwargs", nargs="*", metavar="KEY=VALUE", help="builder arguments of --model (YAML values)")
    p.add_argument("--weights", help="with --model or --config: a weights file or .ckpt to load into the model")
    p.add_argument(
        "--output", "-o", required=True, help="the file to write: .onnx, .tflite (LiteRT) or .pte (ExecuTorch)"
    )
    p.add_argument(
        "--format",
        choices=list(SUFFIXES),
        help="onnx (onnxruntime), litert (LiteRT / TFLite) or executorch (ExecuTorch with XNNPACK); default: by the "
        "--output suffix, else onnx. litert and executorch need the mobile extra: pip install 'mobiletasks[mobile]'",
    )
    p.add_argument("--task", choices=["classification", "attributes", "detection", "segmentation"])
    p.add_argument("--input-size", type=int, help="square input side (default: the model's or the run's)")
    p.add_argument("--class-names", help="comma-separated class names (default: the run's, else class_0, ...)")
    p.add_argument(
        "--static-batch", action="store_true", help="ONNX: batch fixed to 1 (default: dynamic; LiteRT, ExecuTorch: 1)"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: mobiletasks.deploy.onnx.OPSET)")
    p.add_argument(
        "--int8", action="store_true", help="also write <output>.int8.<suffix>: static int8, calibrated on images"
    )
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
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"mobiletasks export: error: {err}")
        return 2


def output_format(output: Path, requested: str | None) -> str:
    """The format to write: ``requested`` (it must fit the suffix of ``output``), else the suffix's, else onnx."""
    by_suffix = next((name for name, suffix in SUFFIXES.items() if output.suffix.lower() == suffix), None)
    if requested is None:
        return by_suffix or "onnx"
    if output.suffix.lower() != SUFFIXES[requested]:
        raise ValueError(
            f"--format {requested} writes a {SUFFIXES[requested]} file, but --output is {output}; name it "
            f"{output.with_suffix(SUFFIXES[requested]).name}"
        )
    return requested


def _run(args: argparse.Namespace) -> int:
    from ..deploy.graphs import TASKS

    output = Path(args.output)
    fmt = output_format(output, args.format)
    int8_output = output.with_suffix(".int8" + SUFFIXES[fmt])
    if args.int8 and not args.calibration_images:
        raise ValueError("--int8 calibrates on training images: add --calibration-images DIR")
    if args.calibration_images and not args.int8:
        raise ValueError("--calibration-images is for the int8 file: add --int8, or leave the images out")
    if args.int8:  # a missing or empty folder, or a bad count, stops the export before anything is written
        from ..deploy.quantize import calibration_subset

        calibration_subset(args.calibration_images, args.calibration_count)
    if fmt != "onnx" and args.opset is not None:
        raise ValueError(f"--opset is an ONNX option; --format {fmt} has none")
    written = [output, *([int8_output] if args.int8 else [])]
    if fmt != "onnx":
        from ..deploy.mobile import metadata_path, require

        written += [metadata_path(path) for path in written]
        require(*(("litert_torch", "ai_edge_quantizer") if fmt == "litert" else ("executorch",)), runtime=fmt)
    for path in written:
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --output")
    model, record = build(args)
    if fmt != "onnx" and args.input_size is None and _is_detector(model):
        record.pop("image_size", None)  # a detector's mobile file runs at the model's own size
    options: dict[str, Any] = {
        "task": args.task or (record.get("kind") if record.get("kind") in TASKS else None),
        "input_size": args.input_size or record.get("image_size"),
        "class_names": args.class_names.split(",") if args.class_names else record.get("class_names") or [],
        "crop_fraction": float(record.get("crop_fraction") or 0.875),
        "category_ids": record.get("category_ids"),
        "model_name": str(record.get("model") or ""),
    }
    if fmt == "onnx":
        info = _onnx(args, model, output, int8_output, options)
    else:
        if fmt == "litert":
            from ..deploy.litert import export_litert as export
        else:
            from ..deploy.executorch import export_executorch as export
        info = export(
            model,
            output,
            **options,
            int8_path=int8_output if args.int8 else None,
            calibration_images=args.calibration_images,
            calibration_count=args.calibration_count,
        )
    size = f"{info.input_size[0]}x{info.input_size[1]}"
    print(f"wrote {output}: {fmt}, {info.task}, input {size}, {len(info.class_names)} names")
    if args.int8:
        print(f"wrote {int8_output}: int8 (static, calibrated on {args.calibration_images})")
    return 0


def _is_detector(model: Any) -> bool:
    from ..models.detection import SSDDetector

    return isinstance(model, SSDDetector)


def _onnx(args: argparse.Namespace, model: Any, output: Path, int8_output: Path, options: dict[str, Any]) -> Any:
    from ..deploy.onnx import OPSET, export_onnx

    info = export_onnx(model, output, dynamic_batch=not args.static_batch, opset=args.opset or OPSET, **options)
    if args.int8:
        from ..deploy.quantize import quantize_int8

        quantize_int8(output, int8_output, args.calibration_images, count=args.calibration_count)
    return info
