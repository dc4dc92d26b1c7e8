"""ExecuTorch export (``torch.export``, lowered to the XNNPACK delegate), int8 with PT2E quantization and the
XNNPACK quantizer, and a predictor on ExecuTorch's Python runtime.

The file, its metadata file and the pre- and post-processing around it: :mod:`mobiletasks.deploy.mobile`.

Example:
    >>> export_executorch(model, "ssd.pte", int8_path="ssd.int8.pte", calibration_images="train/")  # doctest: +SKIP
    >>> ExecuTorchPredictor("ssd.int8.pte")([image])[0]["boxes"].shape  # doctest: +SKIP
    (12, 4)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..common import PathLike, replace_atomically
from .graphs import Task
from .mobile import MobilePredictor, converter_output, export_mobile, require
from .onnx import DeployInfo

log = logging.getLogger(__name__)

__all__ = ["ExecuTorchPredictor", "export_executorch"]


def _lower(graph: nn.Module, example: Tensor, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(graph, (example,))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    replace_atomically(path, lambda name: Path(name).write_bytes(buffer))


def _quantized(graph: nn.Module, example: Tensor, batches: Sequence[Tensor]) -> nn.Module:
    """``graph`` through PT2E static quantization with the XNNPACK quantizer (symmetric int8, a scale per output
    channel of each weight), calibrated on ``batches``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared: Any = prepare_pt2e(torch.export.export(graph, (example,)).module(), quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    return convert_pt2e(prepared)


def export_executorch(
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
    """Write ``model``'s network as an ExecuTorch program (float32, lowered to XNNPACK) with its metadata file
    beside it, and with ``int8_path`` also the int8 program: PT2E static quantization with the XNNPACK quantizer
    (int8 weights with a scale per output channel, int8 activations with ranges from the calibration images),
    lowered to XNNPACK's integer kernels.

    Args:
        model, task, input_size, class_names, crop_fraction, category_ids, model_name: as
            :func:`~mobiletasks.deploy.export_onnx`; the file's input is fixed at [1, 3, H, W] of ``input_size``.
        path: the ``.pte`` file; ``<path>.json`` is its metadata. Existing files are replaced once the new ones
            are complete.
        int8_path: also write an int8 program there.
        calibration_images, calibration_count: with ``int8_path``: a folder of training images (or a list of
            files) and how many of them calibrate the activation ranges.

    Returns:
        the metadata written.

    Raises:
        ImportError: ``executorch`` is not installed (``pip install "mobiletasks[mobile]"``).
        ValueError: a task or class names that do not fit the model; ``int8_path`` without calibration images;
            no calibration images, or none readable.
        FileNotFoundError: no calibration folder.
    """
    require("executorch", runtime="ExecuTorch export")
    return export_mobile(
        model,
        path,
        "executorch",
        _lower,
        lambda _, graph, example, output, batches: _lower(_quantized(graph, example, batches), example, output),
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


class ExecuTorchPredictor(MobilePredictor):
    """A ``.pte`` file of :func:`export_executorch` on ExecuTorch's Python runtime (XNNPACK), with the call
    contract of :class:`~mobiletasks.deploy.predictor.Predictor` (see :mod:`mobiletasks.deploy.mobile`).

    Args:
        path: the ``.pte`` file (its metadata ``<path>.json`` beside it).
        threads: XNNPACK's threads. ExecuTorch has one thread pool per process: this sets it for every
            ExecuTorch program of the process (None: leave it, by default one thread per core).

    Raises:
        ImportError: ``executorch`` is not installed.
        FileNotFoundError: no model file, or no metadata file beside it.
        ValueError: a file ExecuTorch cannot load.
    """

    runtime = "ExecuTorch"

    def _load(self, threads: int | None) -> None:
        require("executorch", runtime="ExecuTorch")
        with converter_output("ExecuTorch"):
            from executorch.runtime import Runtime

            if threads is not None:
                from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                _unsafe_reset_threadpool(int(threads))
            self._method = Runtime.get().load_program(self.path).load_method("forward")

    def _signature(self) -> tuple[Sequence[int], int]:
        meta = self._method.metadata
        return tuple(meta.input_tensor_meta(0).sizes()), meta.num_outputs()

    def _invoke(self, image: np.ndarray) -> list[np.ndarray]:
        outputs = self._method.execute([torch.from_numpy(image)])
        return [output.numpy() for output in outputs]
