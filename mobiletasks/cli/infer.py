"""``mobiletasks infer``: a checkpoint or an exported model (ONNX, LiteRT, ExecuTorch) on your own images, without
a config or the training data.

It writes what ``mobiletasks predict`` writes for the model's task, with the same prediction writers run by a
Lightning ``Trainer.predict``: a checkpoint's task predicts as in ``predict``; an exported file runs in its
runtime (:func:`~mobiletasks.deploy.load_predictor`) through :class:`PredictorModule`, which returns what the
task's ``predict_step`` returns. The images come from :mod:`mobiletasks.data.inference`; class names, COCO
category ids and a classifier's preprocessing from what the checkpoint (``BaseTask.deploy_record``) or the
exported file (``DeployInfo``) recorded. See ``docs/deploy.md``.

Examples:
    mobiletasks infer runs/quickstart/checkpoints/last.ckpt photos/ --output runs/photos
    mobiletasks infer ssdlite.onnx 'cams/**/*.jpg' street.jpg --score-threshold 0.5 --overwrite
    mobiletasks infer ssdlite.int8.tflite photos/
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ..data.base import default_num_workers
from ..data.inference import KINDS, InferenceDataModule, InputImage, Kind, find_images
from ..deploy.predictor import SUFFIXES

log = logging.getLogger("mobiletasks.infer")
EXPORTED = tuple(SUFFIXES.values())  # mobiletasks.deploy.load_predictor's files

# what each task's writer puts in the output folder
_OUTPUTS = {
    "detection": "predictions.json (COCO results) and images/ (the boxes drawn)",
    "segmentation": "predictions.json, masks/ (palette PNGs) and overlays/",
    "classification": "predictions.json (top-5 classes) and contact_sheet.png",
    "attributes": "predictions.json (attribute probabilities) and contact_sheet.png",
}
_CONTACT_SHEET = 64  # images on a classifier's contact sheet by default


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobiletasks infer",
        description=(
            "Predict with a .ckpt of a mobiletasks run, or an .onnx, .tflite or .pte file from `mobiletasks export`, "
            "on image files, "
            "folders or glob patterns, without a config or the training data. Writes what `mobiletasks predict` "
            "writes for the task: detection: predictions.json (COCO results) and images/; segmentation: "
            "predictions.json, masks/ and overlays/; classification and attributes: predictions.json and "
            "contact_sheet.png. File names are the images' paths relative to the folder given. Images that cannot "
            "be read are skipped with a warning and counted (docs/deploy.md)."
        ),
    )
    p.add_argument(
        "model", help="a .ckpt of a mobiletasks run, or an .onnx, .tflite or .pte file written by `mobiletasks export`"
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively, sorted) or glob patterns (quote them: 'photos/**/*.jpg')",
    )
    p.add_argument(
        "--output",
        "-o",
        default="predictions",
        help="the output folder (default: predictions/ in the working directory); refused where it holds a "
        "predictions.json, unless --overwrite",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument(
        "--score-threshold",
        type=float,
        help="detection: boxes drawn in the pictures score at least this (default 0.3; predictions.json keeps "
        "every detection); attributes: the probability from which an attribute is positive (default 0.5)",
    )
    p.add_argument(
        "--max-images",
        type=_count,
        help="pictures to draw: detection images/, segmentation overlays/, cells of a classifier's contact sheet; "
        f"a number or 'all' (default: all for detection and segmentation, {_CONTACT_SHEET} for classifiers)",
    )
    p.add_argument(
        "--num-workers", type=int, default=None, help="processes reading images (default: from the CPU count; 0: none)"
    )
    p.add_argument(
        "--accelerator",
        default="auto",
        help="a .ckpt's device, as Lightning names it: auto, cpu, gpu, ... (default auto); exported files: the CPU",
    )
    p.add_argument("--overwrite", action="store_true", help="write into an output folder that holds predictions")
    return p


def _count(text: str) -> int | None:
    """``--max-images``: a count, or None for ``all``."""
    if text.lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of pictures (0 or more) or 'all', got {text!r}")
    return value


class PredictorModule(L.LightningModule):
    """A LightningModule whose ``predict_step`` runs a :class:`~mobiletasks.deploy.Predictor` (ONNX, LiteRT or
    ExecuTorch) and returns what
    the task's own ``predict_step`` returns, so the task's prediction writer takes it unchanged:

    - detection: per image a dict of ``boxes`` float [K, 4] (xyxy, the image's pixels), ``scores``, ``labels``
      (int64, 0-based);
    - segmentation: the class map int64 [B, H, W] of the (padded) batch;
    - classification: probabilities [B, K] (softmax; a sigmoid for ``attributes``, whose ``multi_label`` is True).

    The runtime runs on the CPU, whatever device Lightning gives the batch.
    """

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.predictor = predictor
        self.kind: str = predictor.task
        self.multi_label = self.kind == "attributes"

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        images, _ = batch
        if self.kind == "detection":
            return [self._detections(image) for image in images]
        if not len(images):  # unreadable images only
            if self.kind == "segmentation":
                return torch.zeros(0, 0, 0, dtype=torch.long)
            return torch.zeros(0, len(self.predictor.info.class_names))
        outputs = torch.from_numpy(self.predictor(images.cpu().float().numpy()))
        if self.kind == "segmentation":
            return outputs.argmax(1)
        return outputs.sigmoid() if self.multi_label else outputs.softmax(1)

    def _detections(self, image: Tensor) -> dict[str, Tensor]:
        (found,) = self.predictor(image[None].cpu().float().numpy())  # images of their own sizes: one run each
        return {
            "boxes": torch.from_numpy(found["boxes"]).float(),
            "scores": torch.from_numpy(found["scores"]).float(),
            "labels": torch.from_numpy(found["labels"]).long(),
        }


def load_model(path: Path) -> tuple[L.LightningModule, Kind, dict[str, Any]]:
    """The module that predicts, its task and what was recorded about its data (``class_names``,
    ``category_ids``, ``image_size``, ``crop_fraction``; absent where nothing was recorded)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} does not exist; pass a .ckpt of a run or an exported .onnx, .tflite or .pte file"
        )
    if path.suffix.lower() in EXPORTED:
        from ..deploy import load_predictor

        predictor = load_predictor(path)
        info = predictor.info
        if info.task not in KINDS:
            raise ValueError(f"{path} is of task {info.task!r}; infer predicts with {', '.join(KINDS)} models")
        exported_record: dict[str, Any] = {"image_size": info.input_size[0], "crop_fraction": info.crop_fraction}
        if info.class_names:
            exported_record["class_names"] = list(info.class_names)
        if info.category_ids is not None:
            exported_record["category_ids"] = list(info.category_ids)
        return PredictorModule(predictor), info.task, exported_record
    if path.suffix.lower() != ".ckpt":
        raise ValueError(
            f"model {path}: expected a .ckpt (a checkpoint of `mobiletasks fit`) or an .onnx, .tflite or .pte file "
            "(`mobiletasks export`), by its suffix"
        )
    from ..tasks.checkpoint import load_task

    task, record = load_task(path)
    kind = record.get("kind")
    if kind not in KINDS:
        raise ValueError(
            f"checkpoint {path} is of task {kind!r}; infer predicts with {', '.join(KINDS)} tasks (mobiletasks.tasks)"
        )
    if "image_size" not in record and kind in ("classification", "attributes"):
        from ..contracts import HasInputSize

        model = getattr(task, "model", None)
        default = model.default_input_size if isinstance(model, HasInputSize) else None
        size = task.hparams.get("image_size") or default
        if size:
            record["image_size"] = size
    return task, kind, record


def _check_record(model: Path, kind: str, record: dict[str, Any]) -> None:
    """One warning naming what an older checkpoint (or an export without names) did not record, and what is used
    instead."""
    missing = []
    if not record.get("class_names"):
        missing.append("class names (classes are named by their index)")
    if kind in ("classification", "attributes"):
        if "image_size" not in record:
            missing.append("the image size (224 is used)")
        if "crop_fraction" not in record:
            missing.append("the crop fraction (0.875 is used)")
    if not missing:
        return
    fix = (
        "export it with --class-names, or from a checkpoint that records them"
        if model.suffix.lower() in EXPORTED
        else "it was saved before mobiletasks recorded them; checkpoints saved from now on do"
    )
    log.warning("%s does not record %s: %s", model, "; ".join(missing), fix)


def make_writer(kind: str, output: Path, score_threshold: float | None, max_images: int | None) -> Any:
    """The prediction writer ``mobiletasks predict`` configures for ``kind``."""
    from ..tasks.writers.classification import ClassificationWriter
    from ..tasks.writers.detection import DetectionWriter
    from ..tasks.writers.segmentation import SegmentationWriter

    if score_threshold is not None and kind not in ("detection", "attributes"):
        raise ValueError(
            f"--score-threshold applies to detection (boxes drawn) and attributes (positive ones); this model "
            f"is a {kind} model: leave it out"
        )
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"--score-threshold is {score_threshold}; scores are probabilities: pass a value in [0, 1]")
    if kind == "detection":
        return DetectionWriter(str(output), 0.3 if score_threshold is None else score_threshold, max_images)
    if kind == "segmentation":
        return SegmentationWriter(str(output), max_images)
    threshold = 0.5 if score_threshold is None else score_threshold
    sheet = _CONTACT_SHEET if max_images is None else max_images
    return ClassificationWriter(str(output), threshold=threshold, max_images=sheet)


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(list(argv))
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"mobiletasks infer: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    model_path, output = Path(args.model), Path(args.output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} is a file; name a folder (it is created where it does not exist)")
    if (output / "predictions.json").exists() and not args.overwrite:
        raise FileExistsError(
            f"{output} holds predictions.json of an earlier run; pass --overwrite to replace its outputs, or choose "
            "another --output"
        )
    if args.num_workers is None:
        args.num_workers = default_num_workers()
    if args.batch_size < 1 or args.num_workers < 0:
        raise ValueError(
            f"--batch-size must be at least 1 and --num-workers at least 0, got {args.batch_size}, {args.num_workers}"
        )
    images = find_images(args.inputs, exclude=[output])
    module, kind, record = load_model(model_path)
    _check_record(model_path, kind, record)
    writer = make_writer(kind, output, args.score_threshold, args.max_images)
    datamodule = InferenceDataModule(
        images,
        kind,
        record.get("class_names") or (),
        record.get("category_ids"),
        image_size=int(record.get("image_size") or 224),
        crop_fraction=float(record.get("crop_fraction") or 0.875),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    log.info("%s: %s model, %d images", model_path, kind, len(images))
    exported = isinstance(module, PredictorModule)
    trainer = L.Trainer(
        accelerator="cpu" if exported else args.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    return _report(images, datamodule, output, kind)


def _report(images: list[InputImage], datamodule: InferenceDataModule, output: Path, kind: str) -> int:
    """The last line: how many images were predicted (the unreadable ones were named in warnings as they came)."""
    skipped = datamodule.skipped
    read = len(images) - skipped
    if not read:
        print(f"mobiletasks infer: error: none of the {len(images)} images could be read", file=sys.stderr)
        return 1
    unread = f" ({skipped} of {len(images)} could not be read and have none)" if skipped else ""
    print(f"predicted {read} images{unread}: {_OUTPUTS[kind]} in {output}")
    return 0
