"""A reference interpreter of the checked IR: it runs a spec's forward pass directly with torch
functional ops, one hand-written function per layer kind, sharing no code with the emitters or
the runtime helpers. Differential tests compare it with the built module (tests/differential).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Mapping, Sequence

import torch

from nnspec.ir import ModuleDef
from nnspec.interp.ensemble import combine_reference, run_ensemble
from nnspec.interp.execute import InterpError, StateError, Trace, execute
from nnspec.interp.registry import KINDS, Ctx, kind

for _info in pkgutil.iter_modules(__path__):
    if _info.name.startswith("kinds_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def run(ir: ModuleDef, state: Mapping[str, torch.Tensor], inputs: Sequence[torch.Tensor], *,
        trace: Trace | None = None) -> list[torch.Tensor]:
    """Eval-mode forward of a spec's IR (dropout is the identity, batch norm uses its running
    statistics).

    Args:
        ir: the checked IR, `nnspec.load(path).ir`, after lowering named its children (a Spec's
            `.lowered`, `.source` or `.build()` does that).
        state: parameters and persistent buffers by their state_dict names; a tied weight is
            read from its tie's source.
        inputs: one batched tensor per model input, in order.
        trace: called as `trace(path, child, outputs)` after each child module runs.

    Returns:
        The model's outputs, in order.

    Raises:
        InterpError: a layer fails on its inputs, or computes another shape or dtype than the IR
            says (a checker bug, or one of the interpreter's); the message names the spec line.
        StateError: `state` lacks a parameter or buffer the IR needs.
    """
    return execute(ir, state, inputs, trace)


__all__ = ["KINDS", "Ctx", "InterpError", "StateError", "combine_reference", "kind", "run",
           "run_ensemble"]
