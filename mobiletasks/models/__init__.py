"""Complete models registered for ``create_model``."""

from . import classification, detection, segmentation, torchvision_clients
from .torchvision_clients import FPNBackbone, IntermediateTaps

__all__ = ["FPNBackbone", "IntermediateTaps", "classification", "detection", "segmentation", "torchvision_clients"]
