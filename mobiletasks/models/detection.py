"""SSD and SSDLite detectors on any registered backbone (MobileNetV2 paper section 6.2, MobileNetV1 Table 13).

The meta-architecture is torchvision's ``SSD`` (resizing and normalization, matching with ``SSDMatcher``,
box coding with weights (10, 10, 5, 5)); ``SSDDetector`` changes four things:

- labels are 0-based object classes and ``num_classes`` excludes background (the shift is internal);
- the loss: per-image 3:1 hard negative mining where an image without objects still contributes its
  hardest negatives (torchvision's gives it no loss at all), or sigmoid focal loss;
- post-processing: one top-k and one ``batched_nms`` for the whole batch instead of a Python loop over
  classes and images (same detections as torchvision's, see ``tests/test_detection.py``);
- mixed precision: under autocast (``bf16-mixed``, ``16-mixed``) the backbone and the head run in the low
  precision, while anchors, losses and post-processing stay in float32 (``tests/test_precision.py``).

Example:
    >>> from mobiletasks import create_model
    >>> model = create_model("ssdlite_mobilenet_v2", num_classes=20).eval()
    >>> [d["boxes"].shape[-1] for d in model([torch.rand(3, 240, 320)])]
    [4]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import batched_nms, sigmoid_focal_loss

from ..common import IMAGENET_MEAN, IMAGENET_STD, PathLike
from ..compat import GRID_DEFAULT_BOXES, WH_PAIRS, WH_PAIRS_ATTRIBUTE, overrides_private
from ..factory import create_backbone
from ..heads.ssd import EXTRA_DEPTHS, SSDFeatureExtractor, SSDHead, detection_taps, ssdlite_head
from ..preprocessing import rgb
from ..registry import register_model

__all__ = ["SSDDetector", "TFAnchorGenerator", "ssd", "ssd300_mobilenet_v1", "ssdlite", "ssdlite_mobilenet_v1"]

LossName = Literal["hard_negative", "focal"]


@overrides_private(WH_PAIRS, GRID_DEFAULT_BOXES)  # torchvision's private methods: mobiletasks.compat
class TFAnchorGenerator(DefaultBoxGenerator):
    """SSD default boxes as the TF object detection API's ``ssd_anchor_generator`` makes them.

    Scales run linearly from ``min_scale`` to ``max_scale`` over the maps; each map gets one box per aspect
    ratio plus, for ratio 1, one at the geometric mean of its scale and the next. The lowest map gets
    only three: (0.1, 1), (min_scale, 2), (min_scale, 1/2). Widths are ``scale * sqrt(ratio)`` of the image
    side, heights ``scale / sqrt(ratio)``; centers sit at cell centers. (torchvision's
    ``DefaultBoxGenerator`` always gives ratio pairs and two ratio-1 boxes, so it cannot express the
    lowest layer.)
    """

    def __init__(
        self,
        num_layers: int = 6,
        min_scale: float = 0.2,
        max_scale: float = 0.95,
        aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
        reduce_boxes_in_lowest_layer: bool = True,
        clip: bool = False,
    ) -> None:
        self.ratios = tuple(float(r) for r in aspect_ratios)
        self.reduce_boxes_in_lowest_layer = reduce_boxes_in_lowest_layer
        super().__init__([list(self.ratios)] * num_layers, min_ratio=min_scale, max_ratio=max_scale, clip=clip)

    def _generate_wh_pairs(
        self, num_outputs: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> list[Tensor]:
        pairs = []
        for k in range(num_outputs):
            scale, next_scale = self.scales[k], self.scales[k + 1]
            if k == 0 and self.reduce_boxes_in_lowest_layer:
                specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
            else:
                specs = [(scale, r) for r in self.ratios] + [(math.sqrt(scale * next_scale), 1.0)]
            wh = [[s * math.sqrt(r), s / math.sqrt(r)] for s, r in specs]
            pairs.append(torch.tensor(wh, dtype=dtype, device=device))
        return pairs

    def num_anchors_per_location(self) -> list[int]:
        return [len(p) for p in WH_PAIRS_ATTRIBUTE.read(self)]

    def _grid_default_boxes(
        self, grid_sizes: list[list[int]], image_size: list[int], dtype: torch.dtype = torch.float32
    ) -> Tensor:
        # torchvision makes the boxes in the feature maps' dtype: bfloat16 under autocast, whose 8-bit mantissa
        # moves the centers by up to half a pixel at 320. Boxes are coordinates: at least float32.
        return super()._grid_default_boxes(grid_sizes, image_size, torch.promote_types(dtype, torch.float32))


class SSDDetector(SSD):
    """torchvision's SSD with 0-based labels, an empty-image-safe loss and batched post-processing.

    Args:
        backbone: returns an ordered dict of feature maps (e.g. ``SSDFeatureExtractor``).
        anchor_generator: default boxes, one set per map.
        size: the square input side the images are resized to.
        num_classes: object classes, without background.
        head: maps the features to ``bbox_regression`` and ``cls_logits`` (``num_classes + 1`` columns).
        loss: ``"hard_negative"`` (softmax cross-entropy, ``neg_to_pos_ratio`` hard negatives per positive)
            or ``"focal"`` (sigmoid focal loss over all anchors; the background column is unused).
        score_thresh, nms_thresh, topk_candidates, detections_per_img: post-processing: per class, the
            ``topk_candidates`` best anchors above ``score_thresh``, then per-class NMS, then the best
            ``detections_per_img`` of the image.
        iou_thresh: matching threshold of anchors to ground truth.
        image_mean, image_std: the input normalization, per RGB channel (default ImageNet's), done by
            torchvision's transform; recorded as tuples in ``image_mean`` / ``image_std``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: int,
        num_classes: int,
        head: nn.Module,
        *,
        loss: LossName = "hard_negative",
        neg_to_pos_ratio: float = 3.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.6,
        topk_candidates: int = 100,
        detections_per_img: int = 100,
        iou_thresh: float = 0.5,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes counts object classes without background, must be >= 1; got {num_classes}")
        if loss not in ("hard_negative", "focal"):
            raise ValueError(f"loss must be 'hard_negative' or 'focal', got {loss!r}")
        mean, std = rgb(image_mean, "image_mean"), rgb(image_std, "image_std")
        super().__init__(
            backbone,
            anchor_generator,
            (size, size),
            num_classes + 1,
            list(mean),
            list(std),
            head,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            iou_thresh=iou_thresh,
            topk_candidates=topk_candidates,
            positive_fraction=1.0 / (1.0 + neg_to_pos_ratio),
        )
        self.num_classes = num_classes
        self.image_mean, self.image_std = mean, std  # what torchvision's transform normalizes with
        self.default_input_size = size
        self.class_head_prefix = "head.classification_head."  # fresh when fine-tuned to other classes
        self.loss, self.focal_alpha, self.focal_gamma = loss, focal_alpha, focal_gamma
        if loss == "focal":
            _init_prior(head)

    def forward(
        self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training mode: a dict of losses; eval mode: per image ``boxes`` (xyxy, input pixels), ``scores``
        and 0-based ``labels``. ``images`` is a list of ``Tensor[3, H, W]`` in [0, 1] or a batch tensor."""
        if isinstance(images, Tensor):
            images = list(images.unbind(0)) if images.dim() == 4 else [images]
        if targets is not None:
            targets = [self._shift_labels(i, t) for i, t in enumerate(targets)]
        return super().forward(images, targets)

    def _shift_labels(self, index: int, target: dict[str, Tensor]) -> dict[str, Tensor]:
        labels = target["labels"]
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"target {index}: labels must be in [0, {self.num_classes}) (0-based object classes, no "
                f"background), got {labels.unique().tolist()}; check the dataset's classes or set num_classes"
            )
        return {**target, "labels": labels + 1}

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        regression = _at_least_float32(head_outputs["bbox_regression"])
        logits = _at_least_float32(head_outputs["cls_logits"])
        matched = torch.stack(matched_idxs)  # [B, A], -1 where an anchor is background
        foreground = matched >= 0
        # index into the batch's concatenated ground truth
        counts = torch.tensor([len(t["labels"]) for t in targets], device=matched.device)
        offsets = (counts.cumsum(0) - counts)[:, None]
        gt_index = (matched + offsets)[foreground]
        gt_boxes = torch.cat([t["boxes"] for t in targets])[gt_index]
        labels = torch.zeros_like(matched)
        labels[foreground] = torch.cat([t["labels"] for t in targets])[gt_index]

        num_foreground = foreground.sum().clamp(min=1)
        target_regression = self.box_coder.encode_single(gt_boxes, torch.stack(anchors).to(regression)[foreground])
        box_loss = F.smooth_l1_loss(regression[foreground], target_regression, reduction="sum")

        if self.loss == "focal":
            onehot = F.one_hot(labels, logits.shape[-1])[..., 1:].to(logits.dtype)
            cls_loss = sigmoid_focal_loss(logits[..., 1:], onehot, self.focal_alpha, self.focal_gamma, "sum")
        else:
            ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
            # the hardest negatives, neg_to_pos_ratio per positive (per 1 in an image without objects)
            num_negative = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True).clamp(min=1)
            rank = ce.masked_fill(foreground, -math.inf).argsort(1, descending=True).argsort(1)
            hard_negative = (rank < num_negative) & ~foreground
            cls_loss = ce[foreground].sum() + ce[hard_negative].sum()
        return {"bbox_regression": box_loss / num_foreground, "classification": cls_loss / num_foreground}

    def postprocess_detections(
        self, head_outputs: dict[str, Tensor], image_anchors: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        regression = _at_least_float32(head_outputs["bbox_regression"])
        logits = _at_least_float32(head_outputs["cls_logits"])
        scores = logits[..., 1:].sigmoid() if self.loss == "focal" else F.softmax(logits, -1)[..., 1:]
        batch, num_anchors, num_classes = scores.shape
        boxes = self.box_coder.decode_single(regression.reshape(-1, 4), torch.cat(image_anchors).to(regression))
        boxes = boxes.view(batch, num_anchors, 4)
        hw = torch.tensor(image_shapes, dtype=boxes.dtype, device=boxes.device)  # [B, 2]
        upper = hw.flip(1).repeat(1, 2)[:, None]  # (w, h, w, h) per image
        boxes = torch.minimum(boxes.clamp(min=0), upper)

        # per image and class, the best topk_candidates anchors above the threshold
        top_scores, top_anchor = scores.transpose(1, 2).topk(min(self.topk_candidates, num_anchors), dim=-1)
        image, label, slot = (top_scores > self.score_thresh).nonzero(as_tuple=True)
        anchor = top_anchor[image, label, slot]
        boxes, scores = boxes[image, anchor], top_scores[image, label, slot]
        keep = batched_nms(boxes, scores, image * num_classes + label, self.nms_thresh)  # by score, descending

        # the best detections_per_img of each image: group by image, keeping score order
        keep = keep[image[keep].sort(stable=True).indices]
        per_image = torch.bincount(image[keep], minlength=batch)
        rank = torch.arange(len(keep), device=keep.device) - (per_image.cumsum(0) - per_image)[image[keep]]
        keep = keep[rank < self.detections_per_img]
        return [
            {"boxes": boxes[k], "scores": scores[k], "labels": label[k]}
            for k in keep.split(per_image.clamp(max=self.detections_per_img).tolist())
        ]


def _at_least_float32(t: Tensor) -> Tensor:
    """``t`` in float32 (float64 stays). Under autocast the head's outputs come out in bfloat16 or float16, where
    softmax scores tie, boxes round to 2 pixels at 320 and ``batched_nms``'s per-class offsets (class index times
    the largest coordinate) swallow the coordinates themselves: losses and post-processing run in float32."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _init_prior(head: nn.Module, prior: float = 0.01) -> None:
    """Start every class at probability ``prior`` under a sigmoid, as RetinaNet does for focal loss."""
    branches: nn.ModuleList = head.classification_head.module_list  # type: ignore[union-attr,assignment]
    for branch in branches:
        last = [m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]
        assert last.bias is not None
        nn.init.constant_(last.bias, -math.log((1 - prior) / prior))


def _build(
    backbone: str,
    *,
    lite: bool,
    num_classes: int,
    size: int,
    backbone_kwargs: dict[str, Any] | None,
    pretrained_backbone: bool | PathLike | None,
    extra_depths: Sequence[int],
    **kwargs: Any,
) -> SSDDetector:
    # the backbone picks its two taps itself, so that it is built once and only up to them
    body = create_backbone(
        backbone, pretrained=pretrained_backbone, out_features=detection_taps, **(backbone_kwargs or {})
    )
    features = SSDFeatureExtractor(body, extra_depths, depthwise=lite)
    anchors = TFAnchorGenerator(num_layers=len(features.out_channels))
    num_anchors = anchors.num_anchors_per_location()
    if lite:
        head: nn.Module = ssdlite_head(features.out_channels, num_anchors, num_classes + 1)
    else:
        head = SSDHead(features.out_channels, num_anchors, num_classes + 1, kernel_size=1)
    return SSDDetector(features, anchors, size, num_classes, head, **kwargs)


@register_model("ssdlite")
def ssdlite(
    *,
    backbone: str = "mobilenet_v2",
    num_classes: int = 80,
    size: int = 320,
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    **kwargs: Any,
) -> SSDDetector:
    """SSDLite on any registered backbone (MobileNetV2 paper, section 6.2).

    The backbone's last stride-16 and stride-32 taps feed the head, followed by four depthwise separable
    extra layers (``extra_depths``); the predictors are 3x3 depthwise + 1x1 convs.

    Args:
        backbone: a registered backbone name (``list_backbones()``, ``torchvision/...``, ``timm/...``).
        num_classes: object classes, without background.
        size: square input side.
        backbone_kwargs: the backbone's own arguments, e.g. ``{"width_mult": 0.75}``.
        pretrained_backbone: ImageNet weights for the backbone (a file, or True for the hub cache).
        **kwargs: ``SSDDetector`` options (loss, score_thresh, nms_thresh, topk_candidates, ...).

    Raises:
        ValueError: a backbone without a stride-16 or a stride-32 tap (``detection_taps``), or bad options.

    Example:
        >>> model = ssdlite(backbone="mobilenet_v1", num_classes=3)
        >>> model.backbone.out_channels
        [512, 1024, 512, 256, 256, 128]
    """
    return _build(
        backbone,
        lite=True,
        num_classes=num_classes,
        size=size,
        backbone_kwargs=backbone_kwargs,
        pretrained_backbone=pretrained_backbone,
        extra_depths=extra_depths,
        **kwargs,
    )


@register_model("ssd")
def ssd(
    *,
    backbone: str = "mobilenet_v1",
    num_classes: int = 80,
    size: int = 300,
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    **kwargs: Any,
) -> SSDDetector:
    """SSD with regular 3x3 extra layers and 1x1 predictors, as TF's SSD-MobileNet (MobileNetV1 paper,
    Table 13). Arguments as ``ssdlite``."""
    return _build(
        backbone,
        lite=False,
        num_classes=num_classes,
        size=size,
        backbone_kwargs=backbone_kwargs,
        pretrained_backbone=pretrained_backbone,
        extra_depths=extra_depths,
        **kwargs,
    )


@register_model("ssdlite_mobilenet_v2")
def ssdlite_mobilenet_v2(
    *, num_classes: int = 80, width_mult: float = 1.0, size: int = 320, **kwargs: Any
) -> SSDDetector:
    """SSDLite on MobileNetV2, 320x320: 4.3M parameters, 0.8B MAdds for 80 classes (V2 paper, Table 6).

    Reads ``layer15_expansion`` (stride 16, 576 channels) and ``layer19`` (stride 32, 1280 channels)."""
    return ssdlite(
        backbone="mobilenet_v2",
        num_classes=num_classes,
        size=size,
        backbone_kwargs={"width_mult": width_mult},
        **kwargs,
    )


@register_model("ssdlite_mobilenet_v1")
def ssdlite_mobilenet_v1(
    *, num_classes: int = 80, width_mult: float = 1.0, size: int = 320, **kwargs: Any
) -> SSDDetector:
    """SSDLite on MobileNetV1, 320x320: 5.1M parameters, 1.3B MAdds (V2 paper, Table 6).

    Reads ``conv11`` (stride 16, 512 channels) and ``conv13`` (stride 32, 1024 channels)."""
    return ssdlite(
        backbone="mobilenet_v1",
        num_classes=num_classes,
        size=size,
        backbone_kwargs={"width_mult": width_mult},
        **kwargs,
    )


@register_model("ssd300_mobilenet_v1")
def ssd300_mobilenet_v1(
    *, num_classes: int = 80, width_mult: float = 1.0, size: int = 300, **kwargs: Any
) -> SSDDetector:
    """SSD300 on MobileNetV1: 6.8M parameters, 1.2B MAdds (V1 paper, Table 13)."""
    return ssd(
        backbone="mobilenet_v1",
        num_classes=num_classes,
        size=size,
        backbone_kwargs={"width_mult": width_mult},
        **kwargs,
    )
