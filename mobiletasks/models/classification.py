"""The ImageNet classifiers of the two papers, for ``create_model``."""

from __future__ import annotations

from typing import Any

from ..backbones import MobileNetV1, MobileNetV2
from ..registry import register_model


@register_model("mobilenet_v1")
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    """MobileNetV1 classifier (V1 paper, Table 1); arguments as :class:`MobileNetV1`.

    Example:
        >>> model = mobilenet_v1(width_mult=0.5, num_classes=1000)
    """
    return MobileNetV1(**kwargs)


@register_model("mobilenet_v2")
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 classifier (V2 paper, Table 2); arguments as :class:`MobileNetV2`.

    Example:
        >>> model = mobilenet_v2(width_mult=1.4)
    """
    return MobileNetV2(**kwargs)
