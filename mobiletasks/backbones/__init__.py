"""Backbones: MobileNet V1/V2 and adapters for torchvision and timm models, all with ``feature_info``."""

from . import adapters
from .adapters import TimmBackbone, TorchvisionBackbone, dilate_
from .base import Backbone, FeatureBackbone, FeatureInfo, OutFeatures
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2

__all__ = [
    "Backbone",
    "FeatureBackbone",
    "FeatureInfo",
    "MobileNetV1",
    "MobileNetV2",
    "OutFeatures",
    "TimmBackbone",
    "TorchvisionBackbone",
    "adapters",
    "dilate_",
]
