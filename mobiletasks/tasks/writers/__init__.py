"""Prediction writers: ``mobiletasks predict`` saves what the model found, as data and as pictures.

One module per task (``detection``, ``segmentation``, ``classification``, which also writes attributes), each a
Lightning ``BasePredictionWriter``; ``base`` holds what they share.
"""

from .classification import ClassificationWriter
from .detection import DetectionWriter
from .segmentation import SegmentationWriter

__all__ = ["ClassificationWriter", "DetectionWriter", "SegmentationWriter"]
