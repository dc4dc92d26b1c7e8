"""The graphs that leave Python: each task's model with its pre- and post-processing, as one tensor program.

Every graph takes ``images``: float32 [N, 3, H, W], RGB in [0, 1] (the models normalize inside), and returns
fixed-rank tensors, so that ONNX and other runtimes need no Python around them:

- ``ClassificationGraph``: ``logits`` [N, K] (softmax or sigmoid is the caller's, as in eager PyTorch);
- ``SegmentationGraph``: ``logits`` [N, C, H, W] at the input's size;
- ``DetectionGraph``: the detections of ``SSDDetector`` in eval mode, padded to ``detections_per_img``:
  ``boxes`` [N, D, 4] (xyxy, input pixels), ``scores`` [N, D], ``labels`` [N, D] (int64, 0-based), and
  ``num_detections`` [N] (int64): the first ``num_detections[i]`` rows of image ``i`` are its detections, by
  score, and the rest are zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList

from ..heads.classification import AttributeHead
from ..models.detection import SSDDetector
from ..models.segmentation import DeepLabV3
from .nms import grouped_nms

__all__ = [
    "OUTPUTS",
    "ClassificationGraph",
    "DetectionGraph",
    "DetectionHeadGraph",
    "DetectionPostprocess",
    "SegmentationGraph",
    "Task",
    "inference_graph",
]

Task = Literal["classification", "attributes", "detection", "segmentation"]
TASKS: tuple[Task, ...] = ("classification", "attributes", "detection", "segmentation")
OUTPUTS: dict[str, list[str]] = {
    "classification": ["logits"],
    "attributes": ["logits"],
    "segmentation": ["logits"],
    "detection": ["boxes", "scores", "labels", "num_detections"],
}


class ClassificationGraph(nn.Module):
    """A classifier's ``logits`` [N, K] of ``images`` in [0, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.model(images)
        return logits


class SegmentationGraph(nn.Module):
    """A segmenter's ``logits`` [N, C, H, W] (``model(images)["out"]``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.model(images)["out"]
        return logits


class DetectionPostprocess(nn.Module):
    """``SSDDetector``'s post-processing of one batch of head outputs, as tensors: box decoding, per class the
    ``topk_candidates`` best anchors above ``score_thresh``, per-class NMS (one ``grouped_nms``), the best
    ``detections_per_img`` of each image, and boxes scaled from the model's input to the image's pixels. Each
    step is the eager model's (``SSDDetector.postprocess_detections``), so the detections are the same
    (``tests/test_deploy.py``). It runs inside the ONNX graph, and after a LiteRT or ExecuTorch network
    (:mod:`mobiletasks.deploy.mobile`), built from :meth:`config`.

    Args:
        anchors: float32 [A, 4], xyxy pixels of the model's input (``size``).
        size: (height, width) of the model's input.
        box_weights: the box coder's weights (torchvision's SSD: (10, 10, 5, 5)).
        focal: scores are sigmoids of the logits (focal loss), else a softmax; the background column is dropped.
        score_thresh, nms_thresh, topk_candidates, detections_per_img: as ``SSDDetector``.
    """

    def __init__(
        self,
        anchors: Tensor,
        size: tuple[int, int],
        *,
        box_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0),
        focal: bool = False,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.6,
        topk_candidates: int = 100,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.anchors: Tensor
        self.register_buffer("anchors", anchors.float(), persistent=False)
        self.size = (int(size[0]), int(size[1]))
        self.box_coder = BoxCoder(tuple(float(w) for w in box_weights))
        self.focal = bool(focal)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.topk_candidates, self.detections_per_img = int(topk_candidates), int(detections_per_img)

    @classmethod
    def of(cls, model: SSDDetector) -> DetectionPostprocess:
        """The post-processing of ``model``, with its anchors at its input size."""
        height, width = model.transform.fixed_size or (model.default_input_size,) * 2
        size = (int(height), int(width))
        with torch.no_grad():
            probe = torch.zeros(1, 3, *size)
            features = list(model.backbone(probe).values())
            anchors = model.anchor_generator(ImageList(probe, [size]), features)[0]
        return cls(
            anchors,
            size,
            box_weights=tuple(model.box_coder.weights),
            focal=model.loss == "focal",
            score_thresh=model.score_thresh,
            nms_thresh=model.nms_thresh,
            topk_candidates=model.topk_candidates,
            detections_per_img=model.detections_per_img,
        )

    def config(self) -> dict[str, Any]:
        """JSON values that rebuild this module: ``DetectionPostprocess.from_config(config)``."""
        return {
            "anchors": self.anchors.tolist(),
            "size": list(self.size),
            "box_weights": list(self.box_coder.weights),
            "focal": self.focal,
            "score_thresh": self.score_thresh,
            "nms_thresh": self.nms_thresh,
            "topk_candidates": self.topk_candidates,
            "detections_per_img": self.detections_per_img,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DetectionPostprocess:
        values = dict(config)
        anchors = torch.tensor(values.pop("anchors"), dtype=torch.float32)
        size = tuple(values.pop("size"))
        values["box_weights"] = tuple(values["box_weights"])
        return cls(anchors, (int(size[0]), int(size[1])), **values)

    def forward(
        self, regression: Tensor, logits: Tensor, height: Any, width: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detections of a batch.

        Args:
            regression: float [N, A, 4], the head's box regression.
            logits: float [N, A, K + 1], the head's class logits, background first.
            height, width: the images' size in pixels (ints, or symbolic ones in an export).

        Returns:
            ``boxes`` float [N, D, 4] (xyxy, image pixels), ``scores`` [N, D], ``labels`` int64 [N, D] (0-based),
            ``num_detections`` int64 [N]: the first ``num_detections[i]`` rows of image ``i`` are its detections,
            by score, the rest zeros.
        """
        regression, logits = regression.float(), logits.float()
        scores = logits[..., 1:].sigmoid() if self.focal else F.softmax(logits, -1)[..., 1:]
        batch, num_anchors, num_classes = scores.shape
        anchors = self.anchors.repeat(batch, 1)
        boxes = self.box_coder.decode_single(regression.reshape(-1, 4), anchors).view(batch, num_anchors, 4)
        side = torch.tensor([self.size[1], self.size[0]] * 2, dtype=boxes.dtype, device=boxes.device)
        boxes = torch.minimum(boxes.clamp(min=0), side)

        k = min(self.topk_candidates, num_anchors)
        top_scores, top_anchor = scores.transpose(1, 2).topk(k, dim=-1)  # [N, C, k]
        first = torch.arange(batch, device=boxes.device)[:, None, None] * num_anchors  # of each image's anchors
        candidates = boxes.reshape(-1, 4)[(top_anchor + first).reshape(-1)].view(batch, num_classes, k, 4)
        kept = grouped_nms(candidates.reshape(-1, k, 4), top_scores.reshape(-1, k), self.nms_thresh, self.score_thresh)
        group, slot = kept[:, 0], kept[:, 1]
        # the kept candidates' scores in an [N, C * k] table (-1 elsewhere), then the best of each image
        table = torch.full((batch, num_classes * k), -1.0, dtype=scores.dtype, device=scores.device)
        table = table.index_put(
            (group // num_classes, (group % num_classes) * k + slot), top_scores.reshape(-1, k)[group, slot]
        )
        best, index = table.topk(min(self.detections_per_img, num_classes * k), dim=1)
        found = best >= 0
        resized = torch.tensor([self.size[1], self.size[0]], dtype=boxes.dtype, device=boxes.device)
        scale = (torch.tensor([width, height], device=boxes.device).to(boxes.dtype) / resized).repeat(2)
        best_boxes = torch.gather(candidates.reshape(batch, -1, 4), 1, index[..., None].expand(-1, -1, 4)) * scale
        return (
            best_boxes * found[..., None],
            best * found,
            (index // k) * found,
            found.sum(1),
        )


def _normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=images.dtype, device=images.device)
    s = torch.tensor(std, dtype=images.dtype, device=images.device)
    return (images - m[:, None, None]) / s[:, None, None]


class DetectionHeadGraph(nn.Module):
    """``SSDDetector``'s network on images already at its input size: normalization, backbone and head, giving
    ``bbox_regression`` [N, A, 4] and ``cls_logits`` [N, A, K + 1] (float32), for runtimes that run
    :class:`DetectionPostprocess` outside the graph (LiteRT, ExecuTorch)."""

    def __init__(self, model: SSDDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        model = self.model
        outputs = model.head(list(model.backbone(_normalize(images, model.image_mean, model.image_std)).values()))
        return outputs["bbox_regression"], outputs["cls_logits"]


class DetectionGraph(nn.Module):
    """``SSDDetector`` inference as tensors: resize to the model's square side (torchvision's
    ``GeneralizedRCNNTransform``), the network (:class:`DetectionHeadGraph`) and :class:`DetectionPostprocess`,
    so that the detections are the eager model's."""

    def __init__(self, model: SSDDetector) -> None:
        super().__init__()
        self.network = DetectionHeadGraph(model)
        self.postprocess = DetectionPostprocess.of(model)
        self.size = self.postprocess.size

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        height, width = images.shape[-2:]
        model = self.network.model
        x = _normalize(images, model.image_mean, model.image_std)
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        outputs = model.head(list(model.backbone(x).values()))
        return self.postprocess(outputs["bbox_regression"], outputs["cls_logits"], height, width)


def _task_of(model: nn.Module) -> Task:
    if isinstance(model, SSDDetector):
        return "detection"
    if isinstance(model, DeepLabV3):
        return "segmentation"
    return "attributes" if isinstance(getattr(model, "head", None), AttributeHead) else "classification"


def inference_graph(model: nn.Module, task: Task | None = None) -> tuple[nn.Module, Task]:
    """The graph of ``model`` for ``task`` (None: detection for an ``SSDDetector``, segmentation for a
    ``DeepLabV3``, attributes for an ``attribute_classifier``, classification otherwise) and the task.

    Raises:
        ValueError: a task that does not fit the model.
    """
    if task is None:
        task = _task_of(model)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if (task == "detection") != isinstance(model, SSDDetector):
        raise ValueError(
            f"task {task!r} does not fit a {type(model).__name__}: detection needs an SSDDetector (ssdlite_..., ssd...)"
        )
    if isinstance(model, SSDDetector):  # task is "detection"
        return DetectionGraph(model), task
    if task == "segmentation":
        return SegmentationGraph(model), task
    return ClassificationGraph(model), task
