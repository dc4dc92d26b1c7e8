"""Lightning tasks: what is trained, how it is scored and what ``predict`` writes."""

from .base import BaseTask
from .checkpoint import AtomicCheckpointIO, TaskCheckpoint
from .classification import AttributeTask, ClassificationTask
from .detection import DetectionTask
from .loggers import TensorBoardCSVLogger
from .segmentation import SegmentationTask
from .writers import ClassificationWriter, DetectionWriter, SegmentationWriter

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
    "TensorBoardCSVLogger",
]
