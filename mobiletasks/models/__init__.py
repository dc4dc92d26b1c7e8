"""Complete models registered for ``create_model``."""

from . import classification

__all__ = ["classification"]
