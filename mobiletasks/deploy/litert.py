"""LiteRT (TensorFlow Lite) export with Google's converter (``litert-torch``), int8 with its quantizer
(``ai-edge-quantizer``), and a predictor on LiteRT's interpreter (``ai-edge-litert``, XNNPACK on the CPU).

The file, its metadata file and the pre- and post-processing around it: :mod:`mobiletasks.deploy.mobile`.

Example:
    >>> export_litert(model, "ssd.tflite", int8_path="ssd.int8.tflite", calibration_images="train/")  # doctest: +SKIP
    >>> LiteRTPredictor("ssd.int8.tflite")([image])[0]["boxes"].shape  # doctest: +SKIP
    (12, 4)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..common import PathLike, replace_atomically
from .graphs import Task
from .mobile import (
    MobilePredictor,
    calibration_batches,
    converter_output,
    export_mobile,
    read_sidecar,
    require,
    write_sidecar,
)
from .onnx import DeployInfo

log = logging.getLogger(__name__)

__all__ = ["LiteRTPredictor", "export_litert", "quantize_litert"]


def export_litert(
    model: nn.Module,
    path: PathLike,
    *,
    task: Task | None = None,
    input_size: int | Sequence[int] | None = None,
    class_names: Sequence[str] = (),
    crop_fraction: float = 0.875,
    category_ids: Sequence[int] | None = None,
    model_name: str = "",
    int8_path: PathLike | None = None,
    calibration_images: PathLike | Sequence[PathLike] | None = None,
    calibration_count: int = 64,
) -> DeployInfo:
    """Write ``model``'s network as a LiteRT flatbuffer (float32) with its metadata file beside it, and with
    ``int8_path`` also the int8 model (:func:`quantize_litert`).

    Args:
        model, task, input_size, class_names, crop_fraction, category_ids, model_name: as
            :func:`~mobiletasks.deploy.export_onnx`; the file's input is fixed at [1, 3, H, W] of ``input_size``.
        path: the ``.tflite`` file; ``<path>.json`` is its metadata. Existing files are replaced once the new
            ones are complete.
        int8_path: also write an int8 model there.
        calibration_images, calibration_count: with ``int8_path``: a folder of training images (or a list of
            files) and how many of them calibrate the activation ranges.

    Returns:
        the metadata written.

    Raises:
        ImportError: ``litert-torch`` is not installed (``pip install "mobiletasks[mobile]"``).
        ValueError: a task or class names that do not fit the model; ``int8_path`` without calibration images.
    """
    require("litert_torch", runtime="LiteRT export")
    if int8_path is not None:
        require("ai_edge_quantizer", runtime="LiteRT int8")
    return export_mobile(
        model,
        path,
        "litert",
        _convert,
        lambda float_path, _graph, _example, output, batches: _quantize(float_path, output, batches),
        task=task,
        input_size=input_size,
        class_names=class_names,
        crop_fraction=crop_fraction,
        category_ids=category_ids,
        model_name=model_name,
        int8_path=int8_path,
        calibration_images=calibration_images,
        calibration_count=calibration_count,
    )


def _convert(graph: nn.Module, example: Tensor, path: Path) -> None:
    import litert_torch

    replace_atomically(path, litert_torch.convert(graph, (example,)).export)


def quantize_litert(
    model_path: PathLike, output_path: PathLike, calibration_images: PathLike | Sequence[PathLike], *, count: int = 64
) -> Path:
    """Write a static int8 version of a float LiteRT model of :func:`export_litert`, with ``ai-edge-quantizer``
    (recipe ``static_wi8_ai8``: int8 weights with a scale per output channel, int8 activations with min/max
    ranges from the calibration), and its metadata file.

    Every operator the quantizer supports is int8, input and outputs included: :class:`LiteRTPredictor`
    quantizes the input and dequantizes the outputs with the file's scales, and a detector's post-processing
    runs on the dequantized outputs in float.

    Raises:
        FileNotFoundError: no model file or metadata file, or no calibration folder.
        ValueError: no calibration images, or none readable.
    """
    require("ai_edge_quantizer", runtime="LiteRT int8")
    model_path, output_path = Path(model_path), Path(output_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"LiteRT file {model_path} does not exist; write one with `mobiletasks export`")
    info, _ = read_sidecar(model_path)
    batches = calibration_batches(info, calibration_images, count)
    with converter_output("ai-edge-quantizer"):
        _quantize(model_path, output_path, batches)
    write_sidecar(info, output_path, runtime="litert", int8=True)
    log.info("int8 model written to %s", output_path)
    return output_path


def _quantize(model_path: Path, output_path: Path, batches: list[Tensor]) -> None:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    signature, inputs = _signature(Interpreter(str(model_path)))
    tool = quantizer.Quantizer(str(model_path))
    tool.load_quantization_recipe(recipe.static_wi8_ai8())
    ranges = tool.calibrate({signature: [{inputs[0]: batch.numpy()} for batch in batches]})
    quantized = tool.quantize(ranges).quantized_model
    if quantized is None:
        raise RuntimeError(f"ai-edge-quantizer gave no model for {model_path}")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(output_path, lambda name: Path(name).write_bytes(bytes(quantized)))


def _signature(interpreter: Any) -> tuple[str, list[str]]:
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected a LiteRT model with one signature, found {list(signatures)}")
    key, entry = next(iter(signatures.items()))
    return key, list(entry["inputs"])


class LiteRTPredictor(MobilePredictor):
    """A ``.tflite`` file of :func:`export_litert` on LiteRT's interpreter (XNNPACK on the CPU), with the call
    contract of :class:`~mobiletasks.deploy.predictor.Predictor` (see :mod:`mobiletasks.deploy.mobile`).

    Args:
        path: the ``.tflite`` file (its metadata ``<path>.json`` beside it).
        threads: the interpreter's threads (None: LiteRT's default).

    Raises:
        ImportError: ``ai-edge-litert`` is not installed.
        FileNotFoundError: no model file, or no metadata file beside it.
        ValueError: a file LiteRT cannot load.
    """

    runtime = "LiteRT"

    def _load(self, threads: int | None) -> None:
        require("ai_edge_litert", runtime="LiteRT")
        with converter_output("LiteRT"):
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(str(self.path), num_threads=threads)
        signature, inputs = _signature(interpreter)
        self._runner = interpreter.get_signature_runner(signature)
        self._input = inputs[0]
        self._input_details = self._runner.get_input_details()[self._input]
        details = self._runner.get_output_details()
        # the converter names outputs output_0, output_1, ... in the graph's order
        self._outputs_details = sorted(details.items(), key=lambda item: int(item[0].rsplit("_", 1)[-1]))

    def _signature(self) -> tuple[Sequence[int], int]:
        return tuple(int(d) for d in self._input_details["shape"]), len(self._outputs_details)

    def _invoke(self, image: np.ndarray) -> list[np.ndarray]:
        details = self._input_details
        if details["dtype"] != np.float32:
            scale, zero = details["quantization"]
            limits = np.iinfo(details["dtype"])
            image = np.clip(np.round(image / scale + zero), limits.min, limits.max).astype(details["dtype"])
        outputs = self._runner(**{self._input: image})
        arrays = []
        for name, detail in self._outputs_details:
            value = outputs[name]
            if value.dtype != np.float32:
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            arrays.append(value)
        return arrays
