"""Inputs for a differential check: nnspec.export.inputs draws them, the same batches the ONNX
export checks onnxruntime with."""
from nnspec.export.inputs import BATCH, consumers, draw_inputs

__all__ = ["BATCH", "consumers", "draw_inputs"]
