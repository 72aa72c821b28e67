"""Every layer kind, registered by name in `REGISTRY` (each module of this package registers its
own kinds when imported; all of them are imported here)."""
import importlib
import pkgutil

from nnspec.layers.base import REGISTRY, Layer, ShapeError, T, fmt_shape

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGISTRY", "Layer", "ShapeError", "T", "fmt_shape"]
