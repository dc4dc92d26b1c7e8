"""Static int8 quantization of an exported model with onnxruntime's tools, calibrated on images.

:func:`quantize_int8` reads a file of :func:`~mobiletasks.deploy.export_onnx`, runs it on ``count`` calibration
images (preprocessed as the model's task needs) and writes a QDQ model: int8 weights with a scale per output
channel, uint8 activations with ranges from the calibration (min/max), the format that onnxruntime's CPU kernels
fuse into integer convolutions. The network from its first convolution to its last is quantized; what comes
before it (normalization, a detector's resize) and after it (a detector's softmax, box decoding, top-k and NMS,
a segmenter's upsampling of the logits) stays float32, so boxes, scores and outputs keep their types and
precision. The metadata (:class:`~mobiletasks.deploy.DeployInfo`) is copied, so
:class:`~mobiletasks.deploy.OnnxPredictor` runs the int8 file as it runs the float one. Accuracy and speed:
``docs/deploy.md``.

Example:
    >>> quantize_int8("ssdlite.onnx", "ssdlite.int8.onnx", "data/shapes/images/train", count=64)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..common import PathLike
from .onnx import DeployInfo, read_metadata

log = logging.getLogger(__name__)

__all__ = [
    "QUANTIZED_OPS",
    "CalibrationImages",
    "calibration_preprocessing",
    "calibration_subset",
    "quantize_int8",
    "quantized_nodes",
]

# the op types quantized inside the network: onnxruntime fuses Q/DQ around Conv and Gemm into integer kernels
# (QLinearConv, QGemm), folds the ReLU6 clips into the range of the convolution before them, and runs the
# residual Add, Concat, pooling and Resize of the body on uint8 without a round trip through float
QUANTIZED_OPS: tuple[str, ...] = (
    "Conv",
    "Gemm",
    "MatMul",
    "Clip",
    "Relu",
    "Add",
    "Concat",
    "ReduceMean",
    "GlobalAveragePool",
    "Resize",
)
_MATRIX_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
Method = Literal["minmax", "percentile", "entropy"]


def calibration_subset(images: PathLike | Sequence[PathLike], count: int) -> list[Path]:
    """``count`` of ``images`` (a folder: its images at any depth, sorted by path; or a list of image files, in its
    order), evenly spaced over the list so that every part of it is represented; all of them when there are fewer.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: ``count`` < 1, or no images.
    """
    from ..data.io import list_images

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"calibration count must be a positive number of images, e.g. 64, got {count!r}")
    if isinstance(images, str | Path):
        if Path(images).is_file():
            raise ValueError(
                f"calibration images {images} is a file, not a folder: pass the folder of training images it is in "
                "(or, in Python, a list of image files)"
            )
        paths = list_images(images, "calibration image folder")
    else:
        paths = [Path(p) for p in images]
        if not paths:
            raise ValueError("no calibration images given; pass a folder of training images or a list of files")
    if len(paths) <= count:
        return paths
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in picks]


def calibration_preprocessing(info: DeployInfo) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 [H, W, 3] -> float32 [3, H', W'] in [0, 1], the input the model sees in use: a classifier's
    evaluation crop, a detector's or segmenter's image at the model's ``input_size`` (a detector resizes to it
    inside anyway; a segmenter is calibrated at its training size)."""
    height, width = info.input_size
    if info.task in ("classification", "attributes"):
        from ..data.transforms import classification_eval_transform

        if height != width:
            raise ValueError(f"a classifier exported at {height}x{width}: its preprocessing needs a square input")
        crop = classification_eval_transform(height, info.crop_fraction)
        return lambda image: crop(image).numpy()

    import cv2

    def resize(image: np.ndarray) -> np.ndarray:
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / 255.0

    return resize


class CalibrationImages:
    """onnxruntime's ``CalibrationDataReader`` over image files: each readable one, preprocessed, as a batch of
    one (``{"images": float32 [1, 3, H, W]}``). Images are read once, when the reader is made; unreadable ones
    are passed over and counted (``skipped``).

    Args:
        paths: the image files.
        preprocess: uint8 [H, W, 3] -> float32 [3, H', W'].
        input_name: the model's input.

    Raises:
        ValueError: none of the images can be read.
    """

    def __init__(
        self, paths: Sequence[Path], preprocess: Callable[[np.ndarray], np.ndarray], input_name: str = "images"
    ) -> None:
        from ..data.io import ImageReadError, read_image

        self.input_name = input_name
        self.arrays: list[np.ndarray] = []
        self.skipped: list[Path] = []
        for path in paths:
            try:
                image = read_image(path)
            except ImageReadError as err:
                log.debug("calibration: %s", err)
                self.skipped.append(path)
                continue
            self.arrays.append(preprocess(image)[None])
        if self.skipped:
            names = ", ".join(str(p) for p in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            log.warning(
                "calibration: %d of %d images cannot be read and are passed over: %s",
                len(self.skipped),
                len(paths),
                names,
            )
        if not self.arrays:
            raise ValueError(
                f"none of the {len(paths)} calibration images can be read (e.g. {paths[0]}); pass a folder of "
                "training images that Pillow opens"
            )
        self._position = 0

    def __len__(self) -> int:
        return len(self.arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next image's feed, None after the last (onnxruntime's protocol)."""
        if self._position >= len(self.arrays):
            return None
        self._position += 1
        return {self.input_name: self.arrays[self._position - 1]}

    def rewind(self) -> None:
        self._position = 0


def quantized_nodes(model: Any, op_types: Iterable[str] = QUANTIZED_OPS, *, float_last: bool = False) -> list[str]:
    """The names of the nodes of ``model`` (an ``onnx.ModelProto``) that int8 quantization covers: those of
    ``op_types`` from the first convolution (or matrix product) to the last, i.e. each descendant of one that
    is also an ancestor of one. What feeds the first (input normalization, a detector's resize) and what
    follows the last (post-processing) stays float; with ``float_last`` the last ones themselves too (those
    that feed no other: a classifier's or segmenter's logits layer, a detector's box and class predictors)."""
    nodes = list(model.graph.node)
    producer = {out: k for k, node in enumerate(nodes) for out in node.output if out}
    consumers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(k)

    def before(k: int) -> Iterable[int]:
        return (producer[name] for name in nodes[k].input if name in producer)

    def after(k: int) -> Iterable[int]:
        return (c for name in nodes[k].output for c in consumers.get(name, ()))

    def reach(starts: Iterable[int], step: Callable[[int], Iterable[int]]) -> set[int]:
        todo = list(starts)
        seen = set(todo)
        while todo:
            for k in step(todo.pop()):
                if k not in seen:
                    seen.add(k)
                    todo.append(k)
        return seen

    matrix = [k for k, node in enumerate(nodes) if node.op_type in _MATRIX_OPS]
    feeding = reach((j for k in matrix for j in before(k)), before)  # strictly before some matrix product
    body = (feeding | (set() if float_last else set(matrix))) & reach(matrix, after)
    wanted = set(op_types)
    return [nodes[k].name for k in sorted(body) if nodes[k].op_type in wanted]


def quantize_int8(
    model_path: PathLike,
    output_path: PathLike,
    calibration_images: PathLike | Sequence[PathLike],
    *,
    count: int = 64,
    method: Method = "minmax",
    op_types: Sequence[str] = QUANTIZED_OPS,
    float_last: bool = False,
) -> Path:
    """Write a static int8 (QDQ) version of an exported model, calibrated on images.

    Args:
        model_path: a float ``.onnx`` file from :func:`~mobiletasks.deploy.export_onnx` (or ``mobiletasks
            export``).
        output_path: the int8 file to write; an existing file is replaced only once the new one is complete.
        calibration_images: a folder of images like the training images (any depth), or a list of image files;
            ``count`` of them, evenly spaced in sorted order (:func:`calibration_subset`), are preprocessed as in
            use (see ``calibration_preprocessing``) and run through the model.
        count: how many images calibrate the activation ranges.
        method: how a range is taken from the calibration activations: ``minmax`` (their extremes), ``percentile``
            (99.999% of the values) or ``entropy`` (KL divergence); the latter two hold every activation in memory.
        op_types: the op types quantized from the first to the last convolution (:func:`quantized_nodes`).
        float_last: keep the last convolutions (logits, a detector's box and class predictors) in float: 1.15x the
            int8 latency of SSDLite, no change in its mAP (docs/deploy.md).

    Returns:
        ``output_path``.

    Raises:
        FileNotFoundError: no model file, or no calibration folder.
        ValueError: a file without mobiletasks metadata, a bad ``count`` or ``method``, no images in the folder, or
            none of the chosen ones readable.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model_path, output_path = Path(model_path), Path(output_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX file {model_path} does not exist; write one with `mobiletasks export`")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(methods)}")
    info = read_metadata(model_path)
    paths = calibration_subset(calibration_images, count)
    reader = CalibrationImages(paths, calibration_preprocessing(info))
    log.info("calibrating %s on %d images", model_path, len(reader))

    proto = onnx.load(str(model_path))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-", dir=output_path.parent) as work, _without_advice():
        quantized = Path(work) / "int8.onnx"
        quantize_static(  # takes the path: it rewrites a ModelProto passed in
            model_path,
            quantized,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_quantize=quantized_nodes(proto, op_types, float_last=float_last),
            per_channel=True,
            # uint8 activations and int8 weights: onnxruntime's x86 and Arm kernels (QLinearConv, depthwise
            # included) take this pair; int8 activations leave the depthwise convolutions in float (docs/deploy.md)
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            # a classifier's logits stay float: onnxruntime's QGemm takes 8-bit in and gives float out (QLinearConv
            # gives uint8 out, so a convolution's output is quantized unless float_last keeps the layer in float)
            extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]},
        )
        result = onnx.load(str(quantized))
        del result.metadata_props[:]
        result.metadata_props.extend(proto.metadata_props)
        tmp = output_path.with_name(output_path.name + ".tmp")
        try:
            onnx.save(result, str(tmp))
            tmp.replace(output_path)
        finally:
            tmp.unlink(missing_ok=True)
    log.info("int8 model written to %s", output_path)
    return output_path


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _without_advice() -> Iterator[None]:
    """onnxruntime's quantizer advises ``quant_pre_process`` on the root logger at every call; the exported graph
    has its BatchNorms folded and its shapes known, and pre-processing changed neither its nodes nor its speed."""
    advice = _DropAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)
