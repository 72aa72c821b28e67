"""Runtime helper modules that generated code needs beyond torch.nn (channel shuffle, attention,
learned position tables, ...).

Each helper is a self-contained `nn.Module` subclass that uses only `torch`, `nn`, `F` and `math`.
The source emitter copies a helper's source into `model.py` (so that file needs only torch), and
`.build()` runs that same source: one definition serves both.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch.nn as nn

HELPERS: dict[str, type[nn.Module]] = {}


def _collect() -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
                HELPERS[name] = obj


def helper_source(name: str) -> str:
    """The source text of one helper class, as it stands in its module."""
    return inspect.getsource(HELPERS[name])


_collect()
