"""Backbones: MobileNet V1/V2 and adapters for torchvision and timm models, all with ``feature_info``."""

from . import adapters
from .adapters import TimmBackbone, TorchvisionBackbone, dilate_
from .base import FeatureBackbone, FeatureInfo
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2

__all__ = [
    "FeatureBackbone",
    "FeatureInfo",
    "MobileNetV1",
    "MobileNetV2",
    "TimmBackbone",
    "TorchvisionBackbone",
    "adapters",
    "dilate_",
]
