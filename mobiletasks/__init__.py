"""mobiletasks: MobileNet V1/V2 backbones and the tasks of their papers."""

from . import backbones, models
from .backbones import FeatureInfo
from .factory import create_backbone, create_model
from .registry import list_backbones, list_models, register_backbone, register_model
from .summary import ModelSummary, model_summary

__version__ = "0.1.0"

__all__ = [
    "FeatureInfo",
    "ModelSummary",
    "backbones",
    "create_backbone",
    "create_model",
    "list_backbones",
    "list_models",
    "model_summary",
    "models",
    "register_backbone",
    "register_model",
]
