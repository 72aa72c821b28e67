"""The table of layer kinds the interpreter can execute: one function per kind, registered by name.

A kind function takes `(layer, w, args, kwargs, ctx)`: the checked layer (its fields are the
spec's arguments), `w` its parameters and persistent buffers by their names relative to the layer
(as `Layer.params()`/`buffers()` name them), the positional and keyword input tensors, and a `Ctx`
with the input types and the run's float dtype. It returns a tensor or a tuple of tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from nnspec.layers.base import T
from nnspec.layers.registry import INTERP_GROUP, failure_line, installed_plugins, report

KINDS: dict[str, Callable] = {}
_plugins = {"loaded": False, "kinds": set()}  # the entry points of INTERP_GROUP, loaded once


@dataclass(frozen=True)
class Ctx:
    """What a kind function may need beyond its tensors."""

    ins: list[T]                 # the types of args then kwargs, per sample
    float_dtype: torch.dtype     # the dtype "float" tensors have in this run

    def dtype(self, name: str) -> torch.dtype:
        """The torch dtype of a spec dtype name in this run."""
        return {"float": self.float_dtype, "long": torch.long, "bool": torch.bool}[name]


Weights = Mapping[str, torch.Tensor]


def kind(*names: str):
    """Register a function as the interpreter of the layer kinds `names`."""
    def wrap(fn):
        for name in names:
            assert name not in KINDS, name
            KINDS[name] = fn
        return fn
    return wrap


def rule(name: str) -> Callable | None:
    """The interpreter function of a layer kind. A kind nnspec lacks may have one from a plugin:
    the entry points of the group `nnspec.interp` load at the first such lookup."""
    if name not in KINDS and not _plugins["loaded"]:
        _plugins["loaded"] = True
        for plugin in installed_plugins(INTERP_GROUP):
            before = set(KINDS)
            try:
                plugin.load()
            except Exception as err:  # reported and skipped, like a broken layer plugin
                for added in set(KINDS) - before:
                    del KINDS[added]
                report(failure_line(plugin, err))
            _plugins["kinds"].update(set(KINDS) - before)
    return KINDS.get(name)


def forget_plugins() -> None:
    """Drop the plugins' rules; the next lookup of a missing kind loads them again."""
    for name in _plugins["kinds"]:
        KINDS.pop(name, None)
    _plugins["kinds"].clear()
    _plugins["loaded"] = False
