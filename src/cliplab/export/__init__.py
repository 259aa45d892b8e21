"""Writing a model for other runtimes: ONNX (`save_onnx`), served by ONNX Runtime, Triton and the like."""

from .onnx import ONNX_CONFIG, OnnxExport, save_onnx

__all__ = ["ONNX_CONFIG", "OnnxExport", "save_onnx"]
