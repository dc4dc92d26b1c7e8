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

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..heads.classification import AttributeHead
from ..models.detection import SSDDetector
from ..models.segmentation import DeepLabV3
from .nms import grouped_nms

__all__ = ["OUTPUTS", "ClassificationGraph", "DetectionGraph", "SegmentationGraph", "Task", "inference_graph"]

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


class DetectionGraph(nn.Module):
    """``SSDDetector`` inference as tensors: resize to the model's square side, backbone and head, box decoding,
    per class the ``topk_candidates`` best anchors above ``score_thresh``, per-class NMS (one ``grouped_nms``),
    the best ``detections_per_img`` of each image, and boxes scaled back to the input's pixels. Each step is
    the eager model's (``SSDDetector.postprocess_detections``, torchvision's ``GeneralizedRCNNTransform``), so
    the detections are the same (``tests/test_deploy.py``)."""

    def __init__(self, model: SSDDetector) -> None:
        super().__init__()
        self.model = model
        height, width = model.transform.fixed_size or (model.default_input_size,) * 2
        self.size = (int(height), int(width))
        with torch.no_grad():
            probe = torch.zeros(1, 3, *self.size)
            features = list(model.backbone(probe).values())
            anchors = model.anchor_generator(ImageList(probe, [self.size]), features)[0]
        self.anchors: Tensor
        self.register_buffer("anchors", anchors.float(), persistent=False)  # [A, 4], xyxy pixels of the resized image

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        height, width = images.shape[-2:]
        mean = torch.tensor(model.transform.image_mean, dtype=images.dtype, device=images.device)
        std = torch.tensor(model.transform.image_std, dtype=images.dtype, device=images.device)
        x = (images - mean[:, None, None]) / std[:, None, None]
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        outputs = model.head(list(model.backbone(x).values()))
        regression, logits = outputs["bbox_regression"].float(), outputs["cls_logits"].float()
        scores = logits[..., 1:].sigmoid() if model.loss == "focal" else F.softmax(logits, -1)[..., 1:]
        batch, num_anchors, num_classes = scores.shape
        anchors = self.anchors.repeat(batch, 1)
        boxes = model.box_coder.decode_single(regression.reshape(-1, 4), anchors).view(batch, num_anchors, 4)
        side = torch.tensor([self.size[1], self.size[0]] * 2, dtype=boxes.dtype, device=boxes.device)
        boxes = torch.minimum(boxes.clamp(min=0), side)

        k = min(model.topk_candidates, num_anchors)
        top_scores, top_anchor = scores.transpose(1, 2).topk(k, dim=-1)  # [N, C, k]
        first = torch.arange(batch, device=boxes.device)[:, None, None] * num_anchors  # of each image's anchors
        candidates = boxes.reshape(-1, 4)[(top_anchor + first).reshape(-1)].view(batch, num_classes, k, 4)
        kept = grouped_nms(
            candidates.reshape(-1, k, 4), top_scores.reshape(-1, k), model.nms_thresh, model.score_thresh
        )
        group, slot = kept[:, 0], kept[:, 1]
        # the kept candidates' scores in an [N, C * k] table (-1 elsewhere), then the best of each image
        table = torch.full((batch, num_classes * k), -1.0, dtype=scores.dtype, device=scores.device)
        table = table.index_put(
            (group // num_classes, (group % num_classes) * k + slot), top_scores.reshape(-1, k)[group, slot]
        )
        best, index = table.topk(min(model.detections_per_img, num_classes * k), dim=1)
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
