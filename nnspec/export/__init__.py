"""Exports of a checked spec to other formats: `nnspec export SPEC --onnx model.onnx`."""
