"""Complete models registered for ``create_model``."""

from . import classification, detection

__all__ = ["classification", "detection"]
