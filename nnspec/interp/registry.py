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

KINDS: dict[str, Callable] = {}


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
