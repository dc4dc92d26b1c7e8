"""Run an exported model: the task's preprocessing before, its outputs as the eager model's. :class:`Predictor` is
the call contract; :class:`OnnxPredictor` runs an ``.onnx`` file with onnxruntime, and :func:`load_predictor`
picks the predictor of a ``.onnx``, ``.tflite`` (LiteRT) or ``.pte`` (ExecuTorch) file.

Example:
    >>> predictor = load_predictor("ssdlite.onnx")  # doctest: +SKIP
    >>> detections = predictor([np.asarray(Image.open("street.jpg").convert("RGB"))])  # doctest: +SKIP
    >>> detections[0]["boxes"].shape  # doctest: +SKIP
    (12, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..common import PathLike
from .onnx import DeployInfo

__all__ = ["SUFFIXES", "OnnxPredictor", "Predictor", "load_predictor"]

# the file of each export format, by which load_predictor (and `mobiletasks infer`) tells the runtime
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "executorch": ".pte"}

Images = np.ndarray | Sequence[np.ndarray] | Any  # a batch array or tensor, or a list of uint8 images


class Predictor:
    """An exported model in a runtime; calling it on ``images`` gives what the eager model gives:

    - detection: per image a dict of ``boxes`` float32 [K, 4] (xyxy, pixels of that image), ``scores`` float32
      [K] and ``labels`` int64 [K] (0-based), by score;
    - segmentation: logits float32 [N, C, H, W] for a batch array, a list of [C, H, W] for a list of images;
    - classification and attributes: logits float32 [N, K] (softmax or sigmoid them for probabilities).

    ``images`` is a float array (or tensor) [N, 3, H, W], RGB in [0, 1], or a list of uint8 RGB images
    [H, W, 3] of any sizes. A classifier's images are first resized and center cropped as in evaluation
    (``classification_eval_transform(input_size, crop_fraction)``); a batch array for a classifier must already
    have its ``input_size``.

    Subclasses set ``path``, ``info`` (:class:`DeployInfo`) and ``max_batch`` (None: any batch size) and
    implement ``_run``: float32 [N, 3, H, W] -> the graph's outputs as arrays.
    """

    path: Path
    info: DeployInfo
    max_batch: int | None = None
    _preprocess: Any = None

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    def __call__(self, images: Images) -> Any:
        if (isinstance(images, np.ndarray) and images.ndim == 4) or hasattr(images, "numpy"):
            batch = self._batch_array(images)
            return self._outputs(self._run(batch))
        arrays = self.preprocess(images)
        if self.task == "classification" or self.task == "attributes":
            return self._outputs(self._run(np.stack(arrays)))
        results: list[Any] = []
        for array in arrays:  # images of their own sizes: one run each
            out = self._outputs(self._run(array[None]))
            results.append(out[0])
        return results

    def preprocess(self, images: Images) -> list[np.ndarray]:
        """Each uint8 [H, W, 3] image as the float32 [3, H', W'] in [0, 1] the graph takes."""
        if isinstance(images, np.ndarray):
            raise ValueError(
                f"images: expected a float array [N, 3, H, W] or a list of uint8 [H, W, 3] images, got an array of "
                f"shape {images.shape}; wrap one image in a list"
            )
        arrays = []
        for k, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"image {k}: expected a uint8 RGB array [H, W, 3], got {image.dtype} {image.shape}; convert it, "
                    "e.g. np.asarray(PIL.Image.open(path).convert('RGB'))"
                )
            if self.task in ("classification", "attributes"):
                arrays.append(self._classifier_transform()(image).numpy())
            else:
                arrays.append(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0)
        return arrays

    def _classifier_transform(self) -> Any:
        if self._preprocess is None:
            from ..data.transforms import classification_eval_transform

            height, width = self.info.input_size
            if height != width:
                raise ValueError(
                    f"{self.path}: a classifier exported at {height}x{width}; preprocessing needs a square"
                )
            self._preprocess = classification_eval_transform(height, self.info.crop_fraction)
        return self._preprocess

    def _batch_array(self, images: Any) -> np.ndarray:
        batch = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"images: expected a float array [N, 3, H, W] in [0, 1], got shape {batch.shape}")
        if self.task in ("classification", "attributes") and tuple(batch.shape[2:]) != self.info.input_size:
            raise ValueError(
                f"{self.path} is a classifier for {self.info.input_size} images, got {tuple(batch.shape[2:])}; "
                "resize them, or pass uint8 [H, W, 3] images in a list to have them resized and cropped"
            )
        return batch

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _outputs(self, outputs: list[np.ndarray]) -> Any:
        if self.task != "detection":
            return outputs[0]
        boxes, scores, labels, counts = outputs
        return [
            {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n]}
            for i, n in enumerate(counts.tolist())
        ]


class OnnxPredictor(Predictor):
    """An onnxruntime session of a file from :func:`~mobiletasks.deploy.export_onnx` (or ``mobiletasks export``),
    with the call contract of :class:`Predictor`.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default: CPU).
        threads: intra-op threads (None: onnxruntime's default, one per core).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file without mobiletasks metadata, or images of the wrong shape or type.
    """

    def __init__(self, path: PathLike, *, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} does not exist; write one with `mobiletasks export`")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:
            raise ValueError(f"onnxruntime cannot load {self.path}: {err}") from err
        self.info = DeployInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        batch = self.session.get_inputs()[0].shape[0]
        self.max_batch = batch if isinstance(batch, int) else None  # None: any batch size

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.max_batch is None or len(batch) <= self.max_batch:
            return self.session.run(None, {"images": batch})
        parts = [self.session.run(None, {"images": batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def load_predictor(path: PathLike, *, threads: int | None = None) -> Predictor:
    """The predictor of an exported model, by its suffix: ``.onnx`` (:class:`OnnxPredictor`, onnxruntime),
    ``.tflite`` (:class:`~mobiletasks.deploy.litert.LiteRTPredictor`, LiteRT) or ``.pte``
    (:class:`~mobiletasks.deploy.executorch.ExecuTorchPredictor`, ExecuTorch with XNNPACK).

    Args:
        path: the model file (``mobiletasks export --format onnx|litert|executorch``).
        threads: the runtime's CPU threads (None: its default).

    Raises:
        FileNotFoundError: no such file (or, for LiteRT and ExecuTorch, no metadata file beside it).
        ValueError: another suffix, or a file the runtime cannot load.
        ImportError: the runtime is not installed (``pip install "mobiletasks[mobile]"``).
    """
    suffix = Path(path).suffix.lower()
    if suffix == SUFFIXES["onnx"]:
        return OnnxPredictor(path, threads=threads)
    if suffix == SUFFIXES["litert"]:
        from .litert import LiteRTPredictor

        return LiteRTPredictor(path, threads=threads)
    if suffix == SUFFIXES["executorch"]:
        from .executorch import ExecuTorchPredictor

        return ExecuTorchPredictor(path, threads=threads)
    raise ValueError(
        f"{path}: unknown model file type {suffix or '(no suffix)'!r}; expected .onnx (onnxruntime), .tflite (LiteRT) "
        "or .pte (ExecuTorch), as `mobiletasks export --format onnx|litert|executorch` writes them"
    )
