"""Every layer kind, registered by name in `REGISTRY`: nnspec's own (each module of this package
registers its kinds when imported; all of them are imported here), then those that installed
plugins add (layers/registry.py)."""
import importlib
import pkgutil

from nnspec.layers.base import REGISTRY, Layer, ShapeError, T, fmt_shape, py, register
from nnspec.layers.registry import PluginError

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGISTRY", "Layer", "PluginError", "ShapeError", "T", "fmt_shape", "py", "register"]
