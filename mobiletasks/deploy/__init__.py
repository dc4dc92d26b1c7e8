"""Leaving Python: ONNX export of every task (:func:`export_onnx`), an onnxruntime predictor
(:class:`OnnxPredictor`) and int8 quantization. See ``docs/deploy.md``."""

from .onnx import DeployInfo, export_onnx, read_metadata
from .predictor import OnnxPredictor

__all__ = ["DeployInfo", "OnnxPredictor", "export_onnx", "read_metadata"]
