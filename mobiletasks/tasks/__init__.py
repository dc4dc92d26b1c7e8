"""Lightning tasks: what is trained, how it is scored and what ``predict`` writes."""

from .base import BaseTask
from .detection import DetectionTask
from .writers import DetectionWriter

__all__ = ["BaseTask", "DetectionTask", "DetectionWriter"]
