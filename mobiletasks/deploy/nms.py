"""Non-maximum suppression over groups of boxes as one operator that exports to ONNX's ``NonMaxSuppression``.

``grouped_nms`` is a PyTorch custom operator: in eager mode it runs torchvision's ``batched_nms``; the ONNX
exporter writes it as one ``NonMaxSuppression`` node that treats each group as a batch entry, so that every
(image, class) pair of a detector is suppressed on its own, as torchvision's per-class NMS does, without the
coordinate offsets ``batched_nms`` uses when traced.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ["ONNX_TRANSLATIONS", "grouped_nms"]


@torch.library.custom_op("mobiletasks::grouped_nms", mutates_args=())
def grouped_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    """The boxes each group keeps after greedy NMS.

    Args:
        boxes: float [G, K, 4], xyxy.
        scores: float [G, K].
        iou_threshold: a box is dropped when its IoU with a kept box of its group exceeds this.
        score_threshold: only boxes scoring above this take part.

    Returns:
        int64 [M, 2]: (group, index within the group) of each kept box, grouped by group, by score within one.
    """
    groups, k = scores.shape
    flat_scores = scores.reshape(-1)
    candidate = (flat_scores > score_threshold).nonzero().squeeze(1)
    group = torch.arange(groups, device=scores.device).repeat_interleave(k)[candidate]
    keep = batched_nms(boxes.reshape(-1, 4)[candidate], flat_scores[candidate], group, iou_threshold)
    keep = candidate[keep[group[keep].sort(stable=True).indices]]
    return torch.stack([keep // k, keep % k], 1)


@grouped_nms.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, 2), dtype=torch.int64)


def _grouped_nms_onnx(boxes: Any, scores: Any, iou_threshold: float, score_threshold: float) -> Any:
    from onnxscript import opset20

    op: Any = opset20  # onnxscript's type stubs do not know the dtypes of traced values

    per_group = op.Shape(boxes, start=1, end=2)  # at most every box of a group
    selected = op.NonMaxSuppression(
        boxes,
        op.Unsqueeze(scores, op.Constant(value_ints=[1])),  # [G, 1 class, K]
        per_group,
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]),
    )  # [M, 3]: (group, class 0, index)
    return op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)


# custom_translation_table of torch.onnx.export for the operators above
ONNX_TRANSLATIONS = {torch.ops.mobiletasks.grouped_nms.default: _grouped_nms_onnx}
