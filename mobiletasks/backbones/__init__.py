"""Backbones: MobileNet V1/V2, ShuffleNet V1, ShiftNet, EffNet, and adapters for torchvision and timm models,
all with ``feature_info``."""

from . import adapters
from .adapters import TimmBackbone, TorchvisionBackbone, dilate_
from .base import Backbone, FeatureBackbone, FeatureInfo, OutFeatures
from .effnet import EffNet
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .shiftnet import ShiftNet
from .shufflenet_v1 import ShuffleNetV1

__all__ = [
    "Backbone",
    "EffNet",
    "FeatureBackbone",
    "FeatureInfo",
    "MobileNetV1",
    "MobileNetV2",
    "OutFeatures",
    "ShiftNet",
    "ShuffleNetV1",
    "TimmBackbone",
    "TorchvisionBackbone",
    "adapters",
    "dilate_",
]
