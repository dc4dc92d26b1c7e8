"""Lightning tasks: what is trained, how it is scored and what ``predict`` writes."""

from .base import BaseTask
from .checkpoint import AtomicCheckpointIO, TaskCheckpoint
from .classification import AttributeTask, ClassificationTask
from .cls_writer import ClassificationWriter
from .detection import DetectionTask
from .seg_writer import SegmentationWriter
from .segmentation import SegmentationTask
from .writers import DetectionWriter

__all__ = [
    "AtomicCheckpointIO",
    "AttributeTask",
    "BaseTask",
    "ClassificationTask",
    "ClassificationWriter",
    "DetectionTask",
    "DetectionWriter",
    "SegmentationTask",
    "SegmentationWriter",
    "TaskCheckpoint",
]
