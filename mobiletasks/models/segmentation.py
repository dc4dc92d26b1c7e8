"""Mobile DeepLabV3 on any registered backbone (MobileNetV2 paper section 6.3, Table 7).

The head reads the backbone's deepest map at output stride 16 or 8 (atrous convolution in the last
stages); on MobileNetV2 that is the 320-channel ``layer18`` (the paper's MNetV2*: the last 1x1 conv to
1280 is not built), on MobileNetV1 ``conv13``. ``model(x)`` takes images in [0, 1] (normalized inside)
and returns ``{"out": logits}`` at the input's resolution, as torchvision's segmentation models do.

Example:
    >>> import torch
    >>> from mobiletasks import create_model
    >>> model = create_model("deeplabv3_mobilenet_v2", num_classes=21, aspp=False).eval()
    >>> model(torch.rand(1, 3, 65, 97))["out"].shape
    torch.Size([1, 21, 65, 97])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.base import Backbone, FeatureInfo
from ..common import IMAGENET_MEAN, IMAGENET_STD, PathLike
from ..factory import create_backbone
from ..heads.deeplab import DeepLabV3Head, atrous_rates
from ..preprocessing import Normalize
from ..registry import register_model

__all__ = ["DeepLabV3", "deeplabv3", "deeplabv3_mobilenet_v1", "deeplabv3_mobilenet_v2"]


class DeepLabV3(nn.Module):
    """A feature backbone and a ``DeepLabV3Head``; logits bilinearly upsampled to the input size.

    Args:
        backbone: a :class:`~mobiletasks.backbones.base.Backbone`; its last map feeds ASPP, its ``low_level`` map
            (if set) the decoder.
        head: the ``DeepLabV3Head``.
        num_classes: classes including background.
        low_level: name of the stride-4 tap for the DeepLabV3+ decoder (None: no decoder).
        image_mean, image_std: the input normalization, per RGB channel (default ImageNet's).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: DeepLabV3Head,
        num_classes: int,
        low_level: str | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.low_level = backbone, head, low_level
        self.num_classes = num_classes
        self.default_input_size = 513
        self.class_head_prefix = "head.classifier."  # fresh when fine-tuned to other classes
        self.normalize = Normalize(image_mean, image_std)
        self.image_mean, self.image_std = self.normalize.image_mean, self.normalize.image_std

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{"out": logits [B, num_classes, H, W]}`` of RGB float images ``[B, 3, H, W]`` in [0, 1]."""
        features = self.backbone(self.normalize(x))
        high = next(reversed(features.values()))
        low = features[self.low_level] if self.low_level is not None else None
        logits = self.head(high, low)
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _taps(info: Sequence[FeatureInfo], tap: str | None, decoder: bool) -> tuple[list[str], str | None]:
    """The taps to build (for the decoder the last stride-4 tap, then the deep one: ``tap``, by default the
    deepest) and the decoder's tap (None without). On the taps a backbone kept of them it gives the same answer: it
    is the backbone's tap selector, then names the taps kept.

    Raises:
        ValueError: ``tap`` is not a tap of the backbone, or the decoder has no stride-4 tap.
    """
    deep = tap or info[-1].name
    if deep not in [f.name for f in info]:
        raise ValueError(f"tap {deep!r} is not a feature of this backbone; choose from {[f.name for f in info]}")
    if not decoder:
        return [deep], None
    low = [f.name for f in info if f.reduction == 4]
    if not low:
        raise ValueError("the DeepLabV3+ decoder needs a stride-4 tap, and this backbone has none; use decoder=False")
    return [low[-1], deep], low[-1]


@register_model("deeplabv3")
def deeplabv3(
    *,
    backbone: str = "mobilenet_v2",
    num_classes: int = 21,
    output_stride: int = 16,
    aspp: bool = True,
    decoder: bool = False,
    tap: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> DeepLabV3:
    """DeepLabV3 on any registered backbone (MobileNetV2 paper section 6.3).

    Args:
        backbone: a registered backbone name (``list_backbones()``, ``torchvision/...``, ``timm/...``).
        num_classes: classes including background (21 for VOC).
        output_stride: 16 or 8; the backbone's last stages are dilated to reach it.
        aspp: ASPP with rates (6, 12, 18) at OS 16 (doubled at 8); False: image pooling + 1x1 branch only.
        decoder: add the DeepLabV3+ decoder on the last stride-4 tap (beyond the paper).
        tap: the map ASPP reads (default: the backbone's deepest).
        backbone_kwargs: the backbone's own arguments, e.g. ``{"width_mult": 0.5}``.
        pretrained_backbone: ImageNet weights for the backbone (a file, or True for the hub cache).
        image_mean, image_std: the input normalization, per RGB channel (default ImageNet's).

    Raises:
        ValueError: ``num_classes`` below 1, an ``output_stride`` other than 8 or 16 with ASPP, an unknown ``tap``,
            or a decoder on a backbone without a stride-4 tap.

    Example:
        >>> deeplabv3(backbone="mobilenet_v1", num_classes=2, aspp=False).head.classifier.out_channels
        2
    """
    if num_classes < 1:
        raise ValueError(f"num_classes counts the classes including background, must be >= 1; got {num_classes}")
    rates = atrous_rates(output_stride, aspp)
    backbone_kwargs = {**(backbone_kwargs or {}), "output_stride": output_stride}
    body = create_backbone(
        backbone,
        pretrained=pretrained_backbone,
        out_features=lambda info: _taps(info, tap, decoder)[0],
        **backbone_kwargs,
    )
    taps, low = _taps(body.feature_info, tap, decoder)  # the taps it kept give the same names
    channels = {f.name: f.channels for f in body.feature_info}
    head = DeepLabV3Head(channels[taps[-1]], num_classes, rates, channels[low] if low else None)
    return DeepLabV3(body, head, num_classes, low, image_mean, image_std)


@register_model("deeplabv3_mobilenet_v2")
def deeplabv3_mobilenet_v2(*, num_classes: int = 21, width_mult: float = 1.0, **kwargs: Any) -> DeepLabV3:
    """DeepLabV3 on MobileNetV2's 320-channel ``layer18`` (MNetV2*, V2 paper Table 7): 2.11M parameters and
    2.75B MAdds at 513x513 without ASPP, 4.52M and 5.8B with it (output stride 16)."""
    return deeplabv3(
        backbone="mobilenet_v2",
        num_classes=num_classes,
        tap="layer18",
        backbone_kwargs={"width_mult": width_mult},
        **kwargs,
    )


@register_model("deeplabv3_mobilenet_v1")
def deeplabv3_mobilenet_v1(*, num_classes: int = 21, width_mult: float = 1.0, **kwargs: Any) -> DeepLabV3:
    """DeepLabV3 on MobileNetV1's ``conv13`` (V2 paper Table 7): 11.15M parameters, 14.25B MAdds at 513x513
    (output stride 16, ASPP)."""
    return deeplabv3(
        backbone="mobilenet_v1",
        num_classes=num_classes,
        tap="conv13",
        backbone_kwargs={"width_mult": width_mult},
        **kwargs,
    )
