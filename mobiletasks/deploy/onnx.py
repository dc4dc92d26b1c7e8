"""ONNX export of every task's model with its pre- and post-processing (:mod:`mobiletasks.deploy.graphs`), and
the metadata a runtime needs to use it.

The file's input is ``images``: float32 [N, 3, H, W], RGB in [0, 1]. Detection and segmentation take any
``H, W`` (a detector resizes inside, as in eager PyTorch); classifiers take ``input_size``. ``N`` is dynamic
unless ``dynamic_batch=False``. The metadata (``onnx.ModelProto.metadata_props``, read back with
:func:`read_metadata`) records the task, the class names, the input size, the normalization done inside, the
preprocessing of a classifier's images and, for COCO data, the category ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..common import IMAGENET_MEAN, IMAGENET_STD, PathLike
from ..contracts import HasInputSize
from ..preprocessing import NormalizesInput
from .graphs import OUTPUTS, Task, inference_graph
from .nms import ONNX_TRANSLATIONS

log = logging.getLogger(__name__)

__all__ = ["OPSET", "DeployInfo", "export_onnx", "read_metadata"]

OPSET = 20  # NonMaxSuppression, Resize and the rest as onnxruntime >= 1.17 runs them
_MAX_SIDE = 8192


@dataclass
class DeployInfo:
    """What a runtime needs to know about an exported model, stored as the ONNX file's metadata.

    Attributes:
        task: ``classification``, ``attributes``, ``detection`` or ``segmentation``.
        input_size: (height, width) pixels the model was trained at (classifiers take exactly this; a detector
            resizes to it inside; a segmenter takes any size).
        class_names: one per output class (detection: object classes without background; segmentation:
            background included), in label order.
        image_mean, image_std: the normalization the graph does inside, for information.
        crop_fraction: a classifier's preprocessing: resize the shorter side to ``input_size / crop_fraction``,
            then center crop (``mobiletasks.data.transforms.classification_eval_transform``).
        category_ids: the dataset's ids of the classes (COCO category ids), written to ``predictions.json``.
        model: the registered model name, for information.
        postprocess: a detector exported without its post-processing (LiteRT, ExecuTorch): the
            ``DetectionPostprocess.config()`` that the predictor runs after the network.
    """

    task: Task
    input_size: tuple[int, int]
    class_names: list[str] = field(default_factory=list)
    image_mean: tuple[float, ...] = tuple(IMAGENET_MEAN)
    image_std: tuple[float, ...] = tuple(IMAGENET_STD)
    crop_fraction: float = 0.875
    category_ids: list[int] | None = None
    model: str = ""
    postprocess: dict[str, Any] | None = None

    def to_metadata(self) -> dict[str, str]:
        return {key: json.dumps(value) for key, value in asdict(self).items() if key != "postprocess" or value}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: object = "the model") -> DeployInfo:
        known = {k: json.loads(v) for k, v in metadata.items() if k in cls.__dataclass_fields__}
        if "task" not in known or "input_size" not in known:
            raise ValueError(
                f"{source} has no mobiletasks metadata (task, input_size): export it with `mobiletasks export` or "
                "mobiletasks.deploy.export_onnx"
            )
        try:
            height, width = (int(side) for side in known["input_size"])
            known["input_size"] = (height, width)
            for key in ("image_mean", "image_std"):
                if key in known:
                    known[key] = tuple(float(v) for v in known[key])
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{source}: unreadable mobiletasks metadata ({err}): input_size must be [height, width], image_mean "
                "and image_std lists of numbers; export the model again"
            ) from err
        return cls(**known)


def read_metadata(path: PathLike) -> DeployInfo:
    """The :class:`DeployInfo` of an ONNX file written by :func:`export_onnx`."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return DeployInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, path)


def _normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not isinstance(model, NormalizesInput):
        raise ValueError(
            f"{type(model).__name__} records no image_mean / image_std: export models from create_model, which take "
            "RGB in [0, 1] and normalize inside (mobiletasks.preprocessing)"
        )
    return tuple(model.image_mean), tuple(model.image_std)


def describe(
    model: nn.Module,
    task: Task,
    input_size: int | Sequence[int] | None = None,
    class_names: Sequence[str] = (),
    crop_fraction: float = 0.875,
    category_ids: Sequence[int] | None = None,
    model_name: str = "",
) -> DeployInfo:
    """The :class:`DeployInfo` of ``model`` exported for ``task`` (arguments as :func:`export_onnx`'s)."""
    size = input_size or (model.default_input_size if isinstance(model, HasInputSize) else None) or 224
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    classes = getattr(model, "num_classes", None)
    if task == "detection" and class_names and isinstance(classes, int) and len(class_names) != classes:
        raise ValueError(
            f"{len(class_names)} class names for a detector of {classes} object classes; give one per class, "
            "background not included"
        )
    return DeployInfo(
        task,
        (height, width),
        list(class_names),
        *_normalization(model),
        crop_fraction,
        None if category_ids is None else list(category_ids),
        model_name,
    )


def export_onnx(
    model: nn.Module,
    path: PathLike,
    *,
    task: Task | None = None,
    input_size: int | Sequence[int] | None = None,
    class_names: Sequence[str] = (),
    dynamic_batch: bool = True,
    crop_fraction: float = 0.875,
    category_ids: Sequence[int] | None = None,
    model_name: str = "",
    opset: int = OPSET,
) -> DeployInfo:
    """Write ``model`` with its task's pre- and post-processing to ``path`` as ONNX (PyTorch's ``torch.export``
    based exporter), with :class:`DeployInfo` as metadata.

    Args:
        model: a model from ``create_model`` (eval mode is set on the exported copy's graph, not on ``model``).
        path: the ``.onnx`` file to write; an existing file is replaced only once the new one is complete.
        task: None: detection for an ``SSDDetector``, segmentation for a ``DeepLabV3``, classification
            otherwise; ``attributes`` for a multi-label classifier.
        input_size: the side (or (height, width)) of the example input and of a classifier's input (default: the
            model's ``default_input_size``, else 224).
        class_names: one per class, recorded for runtimes and ``mobiletasks infer``.
        dynamic_batch: the batch size is dynamic (False: fixed to 1).
        crop_fraction, category_ids, model_name: recorded in the metadata (see :class:`DeployInfo`).
        opset: the ONNX opset.

    Returns:
        the metadata written.

    Raises:
        ValueError: a task that does not fit the model, or class names that do not fit its outputs.
    """
    import onnx

    path = Path(path)
    was_training = model.training
    graph, task = inference_graph(model.eval(), task)
    try:
        info = describe(model, task, input_size, class_names, crop_fraction, category_ids, model_name)
        height, width = info.input_size
        example = torch.rand(2 if dynamic_batch else 1, 3, height, width)
        with torch.no_grad():
            check_classes(task, graph(example), len(class_names))
        dims: dict[int, Any] = {}
        if dynamic_batch:
            dims[0] = torch.export.Dim("batch", min=1, max=4096)
        if task in ("detection", "segmentation"):
            dims[2] = torch.export.Dim("height", min=8, max=_MAX_SIDE)
            dims[3] = torch.export.Dim("width", min=8, max=_MAX_SIDE)
        with warnings.catch_warnings(), _quiet("onnx_ir", "onnxscript"):
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=OUTPUTS[task],
                dynamic_shapes={"images": dims},
                custom_translation_table=ONNX_TRANSLATIONS,  # type: ignore[arg-type]
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        assert program is not None
        proto = program.model_proto
        for key, value in info.to_metadata().items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        onnx.save(proto, str(tmp))
        tmp.replace(path)
    finally:
        model.train(was_training)
    log.info("%s model written to %s (opset %d)", task, path, opset)
    return info


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The exporter's libraries log their internals as warnings ("Attribute type is ambiguous ..."): errors only."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_classes(task: Task, outputs: Any, num_names: int) -> None:
    if not num_names or task == "detection":
        return
    logits = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
    if logits.shape[1] != num_names:
        raise ValueError(
            f"{num_names} class names for a {task} model with {logits.shape[1]} outputs; give one per class"
        )
