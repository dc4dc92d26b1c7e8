"""mobiletasks: MobileNet V1/V2 backbones and the tasks of their papers."""

from . import backbones, models
from .backbones import FeatureInfo
from .factory import create_backbone, create_model
from .models import FPNBackbone, IntermediateTaps
from .optimize import fuse_bn_, optimize_for_inference
from .registry import list_backbones, list_models, register_backbone, register_model
from .summary import ModelSummary, model_summary

__version__ = "0.1.0"

__all__ = [
    "FPNBackbone",
    "FeatureInfo",
    "IntermediateTaps",
    "ModelSummary",
    "backbones",
    "create_backbone",
    "create_model",
    "fuse_bn_",
    "list_backbones",
    "list_models",
    "model_summary",
    "models",
    "optimize_for_inference",
    "register_backbone",
    "register_model",
]
