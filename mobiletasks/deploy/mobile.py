"""What the LiteRT (:mod:`~mobiletasks.deploy.litert`) and ExecuTorch (:mod:`~mobiletasks.deploy.executorch`)
exports share: the graph they convert, the metadata file beside the model, calibration batches, and the
predictor that runs a converted network with the task's pre- and post-processing around it.

Phone runtimes run fixed shapes: a mobile file takes ``images`` float32 [1, 3, H, W] (RGB in [0, 1], the
model normalizes inside) at the exported ``input_size``. Inside it is the network; around it, in the predictor:

- detection: each image resized to ``input_size`` (bilinear, as ``SSDDetector`` does), the file's
  ``bbox_regression`` [1, A, 4] and ``cls_logits`` [1, A, K + 1], then :class:`~mobiletasks.deploy.graphs.
  DetectionPostprocess` (box decoding, top-k, per-class NMS, the best ``detections_per_img``) in PyTorch,
  vectorized, with boxes in the image's pixels: neither runtime has an NMS that matches torchvision's per-class
  NMS, so it stays out of the file, as TensorFlow's Object Detection API leaves it to the app;
- segmentation: each image resized to ``input_size``, its logits resized back to the image's size (bilinear);
- classification: the evaluation crop (as the ONNX predictor), one image at a time.

The metadata (:class:`~mobiletasks.deploy.DeployInfo`, with a detector's post-processing: anchors, thresholds)
is a JSON file beside the model: ``<model file>.json``, e.g. ``ssdlite.tflite.json``. Keep the two together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import PathLike, replace_atomically
from ..optimize import optimize_for_inference
from .graphs import DetectionPostprocess, Task
from .onnx import DeployInfo, check_classes, describe
from .predictor import SUFFIXES, Predictor

__all__ = [
    "EXTRA",
    "SUFFIXES",
    "MobilePredictor",
    "calibration_batches",
    "converter_output",
    "export_mobile",
    "metadata_path",
    "mobile_graph",
    "read_sidecar",
    "require",
    "write_sidecar",
]

log = logging.getLogger(__name__)

EXTRA = 'pip install "mobiletasks[mobile]"'
NAMES = {"onnx": "ONNX", "litert": "LiteRT", "executorch": "ExecuTorch"}


def require(*modules: str, runtime: str) -> None:
    """Raise ImportError naming the extra to install when one of ``modules`` is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{runtime} needs the Python packages of the mobile extra ({', '.join(missing)} missing): {EXTRA}"
        )


@contextlib.contextmanager
def converter_output(what: str) -> Iterator[None]:
    """Hold what the converters print while they work (progress lines, TensorFlow's and JAX's start-up notes, on
    the process's stdout and stderr) and log it at DEBUG level; if they fail, it is logged as an error, with
    ``what`` they were doing."""
    with tempfile.TemporaryFile(mode="w+b") as held:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.flush()
        saved = [os.dup(1), os.dup(2)]
        text = io.StringIO()
        failed = False
        try:
            os.dup2(held.fileno(), 1)
            os.dup2(held.fileno(), 2)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            held.seek(0)
            printed = held.read().decode(errors="replace") + text.getvalue()
            if printed.strip():
                log.log(logging.ERROR if failed else logging.DEBUG, "%s printed:\n%s", what, printed.rstrip())


def metadata_path(path: PathLike) -> Path:
    """The metadata file beside a LiteRT or ExecuTorch model: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(info: DeployInfo, path: PathLike, *, runtime: str, int8: bool) -> Path:
    """Write ``info`` (with the runtime and whether the file is int8) beside the model file ``path``."""
    record = {"format": runtime, "int8": int8, **dataclasses.asdict(info)}
    target = metadata_path(path)

    def write(name: str) -> None:
        Path(name).write_text(json.dumps(record, indent=1) + "\n")

    replace_atomically(target, write)
    return target


def read_sidecar(path: PathLike) -> tuple[DeployInfo, dict[str, Any]]:
    """The :class:`DeployInfo` of a LiteRT or ExecuTorch model, and the whole record (``format``, ``int8``).

    Raises:
        FileNotFoundError: no metadata file beside the model.
        ValueError: a metadata file that is not the one ``mobiletasks export`` writes.
    """
    sidecar = metadata_path(path)
    if not sidecar.is_file():
        raise FileNotFoundError(
            f"{sidecar} does not exist: a LiteRT or ExecuTorch model's metadata (task, classes, input size) is this "
            f"file beside it, written by `mobiletasks export`; copy it with the model, or export again"
        )
    try:
        record = json.loads(sidecar.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        metadata = {k: json.dumps(v) for k, v in record.items() if k not in ("format", "int8")}
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{sidecar} is not a mobiletasks metadata file ({err}); export the model again") from err
    return DeployInfo.from_metadata(metadata, sidecar), record


def mobile_graph(
    model: nn.Module,
    task: Task | None = None,
    input_size: int | Sequence[int] | None = None,
    class_names: Sequence[str] = (),
    crop_fraction: float = 0.875,
    category_ids: Sequence[int] | None = None,
    model_name: str = "",
) -> tuple[nn.Module, DeployInfo, Tensor]:
    """The graph a phone runtime converts, its metadata and an example input [1, 3, H, W].

    The graph is an eval copy of ``model`` with BatchNorm folded and contiguous (NCHW) weights (XNNPACK's layout
    pass refuses channels-last weights), wrapped as the task's graph; a detector's is its network without
    post-processing (:class:`~mobiletasks.deploy.graphs.DetectionHeadGraph`), whose configuration goes into the
    metadata; its input size is the detector's own. ``model`` is not changed.

    Raises:
        ValueError: a task that does not fit the model, class names that do not fit its outputs, or a detector's
            ``input_size`` other than its own.
    """
    from .graphs import DetectionGraph, inference_graph

    copy = optimize_for_inference(model, channels_last=False).to(memory_format=torch.contiguous_format)
    graph, task = inference_graph(copy, task)  # checks that the task fits the model
    info = describe(copy, task, input_size, class_names, crop_fraction, category_ids, model_name)
    if isinstance(graph, DetectionGraph):
        if input_size is not None and info.input_size != graph.size:
            raise ValueError(
                f"a detector's LiteRT or ExecuTorch file takes the input size its anchors were made for, "
                f"{graph.size[0]}x{graph.size[1]}, not {info.input_size[0]}x{info.input_size[1]}: leave the input size "
                f"out, or build the model at that size (e.g. size={info.input_size[0]}) and train it there"
            )
        info.input_size = graph.size
        info.postprocess = graph.postprocess.config()
        graph = graph.network
    example = torch.rand(1, 3, *info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        check_classes(task, graph(example), len(class_names))
    return graph.eval(), info, example


def calibration_batches(info: DeployInfo, images: PathLike | Sequence[PathLike], count: int) -> list[Tensor]:
    """``count`` calibration images (:func:`~mobiletasks.deploy.quantize.calibration_subset`) as the file takes
    them: float32 [1, 3, H, W] in [0, 1] at ``input_size`` (a classifier's evaluation crop); unreadable ones are
    passed over and counted in a warning.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: a bad ``count``, no images, or none readable.
    """
    from .quantize import CalibrationImages, calibration_preprocessing, calibration_subset

    reader = CalibrationImages(calibration_subset(images, count), calibration_preprocessing(info))
    return [torch.from_numpy(array) for array in reader.arrays]


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """PyTorch on one thread around the runtime: the resizing and post-processing work on small tensors, and
    PyTorch's thread pool, spinning after each operation, took the cores from the runtime's threads (a 14 ms int8
    SSDLite call took 38-49 ms with two threads on a busy 2-core machine; docs/deploy.md)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


WriteFloat = Callable[[nn.Module, Tensor, Path], None]  # (graph, example, file)
WriteInt8 = Callable[[Path, nn.Module, Tensor, Path, list[Tensor]], None]  # (float file, graph, example, file, batches)


def export_mobile(
    model: nn.Module,
    path: PathLike,
    runtime: str,
    write_float: WriteFloat,
    write_int8: WriteInt8,
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
    """The steps of a LiteRT or ExecuTorch export around the converter's (``write_float``, ``write_int8``): the
    graph (:func:`mobile_graph`), the calibration images read before anything is written (a bad folder leaves no
    half export), each file with its metadata file beside it. Arguments as ``export_litert``'s."""
    if int8_path is not None and calibration_images is None:
        raise ValueError("int8 calibrates on training images: give calibration_images (--calibration-images DIR)")
    if int8_path is None and calibration_images is not None:
        raise ValueError("calibration images are for an int8 file: give int8_path too (--int8), or leave them out")
    for file in (path, *([] if int8_path is None else [int8_path])):
        if Path(file).suffix.lower() != SUFFIXES[runtime]:
            raise ValueError(
                f"{file}: a {NAMES[runtime]} file is named *{SUFFIXES[runtime]} (load_predictor and `mobiletasks "
                f"infer` tell the runtime by it); name it {Path(file).with_suffix(SUFFIXES[runtime]).name}"
            )
    graph, info, example = mobile_graph(model, task, input_size, class_names, crop_fraction, category_ids, model_name)
    batches = None if int8_path is None else calibration_batches(info, calibration_images or [], calibration_count)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with converter_output(NAMES[runtime]):
        write_float(graph, example, path)
    write_sidecar(info, path, runtime=runtime, int8=False)
    log.info("%s model written to %s (%s)", info.task, path, NAMES[runtime])
    if int8_path is not None and batches is not None:
        int8_path = Path(int8_path)
        int8_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("calibrating on %d images", len(batches))
        with converter_output(NAMES[runtime]):
            write_int8(path, graph, example, int8_path, batches)
        write_sidecar(info, int8_path, runtime=runtime, int8=True)
        log.info("int8 model written to %s", int8_path)
    return info


class MobilePredictor(Predictor):
    """A LiteRT or ExecuTorch model with its metadata file, with the call contract of
    :class:`~mobiletasks.deploy.predictor.Predictor`; the pre- and post-processing around the network are in this
    module's description. Subclasses load the file (``_load``) and run one input (``_invoke``).

    Raises:
        FileNotFoundError: no model file, or no metadata file beside it.
        ValueError: a file the runtime cannot load, or metadata that is not mobiletasks'.
    """

    runtime = ""

    def __init__(self, path: PathLike, *, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.runtime} file {self.path} does not exist; see `mobiletasks export`")
        self.info, record = read_sidecar(self.path)
        self.int8 = bool(record.get("int8"))
        self.max_batch = None  # any batch: one image at a time inside
        self._postprocess = None
        if self.info.task == "detection":
            if self.info.postprocess is None:
                raise ValueError(f"{metadata_path(self.path)} has no post-processing for its detector; export again")
            self._postprocess = DetectionPostprocess.from_config(self.info.postprocess)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a number >= 1 (or None: the runtime's default), got {threads!r}")
        try:
            self._load(threads)
        except (RuntimeError, ValueError, OSError) as err:
            raise ValueError(f"{self.runtime} cannot load {self.path}: {err}") from err
        shape, outputs = self._signature()
        want = (1, 3, *self.info.input_size), 2 if self.info.task == "detection" else 1
        if (tuple(shape), outputs) != want:
            raise ValueError(
                f"{self.path} takes {list(shape)} and gives {outputs} outputs, but its metadata "
                f"{metadata_path(self.path)} describes a {self.info.task} model taking {list(want[0])} with {want[1]}: "
                "the two files are not from the same export; export the model again"
            )

    def _load(self, threads: int | None) -> None:
        raise NotImplementedError

    def _signature(self) -> tuple[Sequence[int], int]:
        """The file's input shape and its number of outputs."""
        raise NotImplementedError

    def _invoke(self, image: np.ndarray) -> list[np.ndarray]:
        """float32 [1, 3, H, W] at ``input_size`` -> the file's outputs, float32."""
        raise NotImplementedError

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        with _one_torch_thread():
            return self._run_images(batch)

    def _run_images(self, batch: np.ndarray) -> list[np.ndarray]:
        size = tuple(self.info.input_size)
        parts: list[list[np.ndarray]] = []
        for image in torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).split(1):
            height, width = image.shape[-2:]
            if (height, width) != size:
                image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            outputs = self._invoke(image.numpy())
            if self._postprocess is not None:
                regression, logits = (torch.from_numpy(o) for o in outputs)
                outputs = [t.numpy() for t in self._postprocess(regression, logits, height, width)]
            elif self.info.task == "segmentation" and (height, width) != size:
                logits = torch.from_numpy(outputs[0])
                outputs = [F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).numpy()]
            parts.append(outputs)
        return [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
