"""Leaving Python: ONNX export of every task (:func:`export_onnx`) with an onnxruntime predictor
(:class:`OnnxPredictor`) and int8 quantization; LiteRT and ExecuTorch exports for phones
(:mod:`mobiletasks.deploy.litert`, :mod:`mobiletasks.deploy.executorch`, the ``mobile`` extra); one predictor
for any of the three files (:func:`load_predictor`). See ``docs/deploy.md``."""

from .onnx import DeployInfo, export_onnx, read_metadata
from .predictor import OnnxPredictor, Predictor, load_predictor

__all__ = ["DeployInfo", "OnnxPredictor", "Predictor", "export_onnx", "load_predictor", "read_metadata"]
