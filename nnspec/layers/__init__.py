"""Every layer kind, registered by name in `REGISTRY`."""
from . import activation, conv, linear, norm, tensor  # noqa: F401  (registration side effects)
from .base import REGISTRY, Layer, ShapeError, T, fmt_shape

__all__ = ["REGISTRY", "Layer", "ShapeError", "T", "fmt_shape"]
