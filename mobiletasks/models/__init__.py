"""Complete models registered for ``create_model``."""

from . import classification, detection, segmentation

__all__ = ["classification", "detection", "segmentation"]
