"""Emit the pipeline layers of a partition: one small nn.Module class per unit (pipeline.Unit).

Each class takes the whole built model and keeps the one module its unit calls as `self.m`, so
the layers share the model's weights and `.build()`'s initialization. Its forward takes what the
previous layer returned (one tensor, or a tuple when several are live, as inside a residual) and
returns what the next one needs; across a stage boundary that is one float tensor, with the
integer and bool tensors later layers still read (ids, a mask) beside it in the tuple. The text
is appended to model.py's and executed with it (emit/module.py), like everything nnspec builds.
"""
from __future__ import annotations

import re

from nnspec.ir import Value
from nnspec.ir.lower import Lowered
from nnspec.place.partition import Partition, Unit
from nnspec.layers.base import py
from nnspec.emit.source import _doc_where, _item_call, _op_lines, _shape
from nnspec.emit.text import doc_text


def unit_class(unit: Unit) -> str:
    """The class name of a unit's layer (also what `checkpointable_layers` lists)."""
    # kinds are identifiers or dotted layer kinds; anything else still yields an identifier
    kind = "".join(p[:1].upper() + p[1:] for p in re.sub(r"\W", "_", unit.kind).split("_"))
    return f"Layer{unit.index}_{kind}"


def emit_pipeline_source(part: Partition, low: Lowered) -> str:
    """Source defining one class per unit and `LAYERS`, the classes in forward order."""
    names: dict[int, str] = {}

    def var(v: Value) -> str:
        v = part.real(v)
        if id(v) not in names:
            names[id(v)] = f"v{len(names)}"
        return names[id(v)]

    texts = []
    before = list(part.inputs)
    for unit, after in zip(part.units, part.live[:-1] + [part.outputs]):
        texts.append(_unit_source(unit, before, after, low, var))
        before = after
    listing = ", ".join(unit_class(u) for u in part.units)
    texts.append(f"LAYERS = [{listing}]\n")
    return "\n\n".join(texts)


def _pack(values: list[Value], var) -> str:
    if len(values) == 1:
        return var(values[0])
    return "(" + ", ".join(var(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def _unit_source(unit: Unit, before: list[Value], after: list[Value], low: Lowered, var) -> str:
    where = _doc_where(unit.span)
    lines = [f"class {unit_class(unit)}(nn.Module):",
             f'    """Pipeline layer {unit.index}: {doc_text(f"{unit.label} ({unit.kind})")}, '
             f'from {where}."""',
             "", "    def __init__(self, model):", "        super().__init__()"]
    if unit.target is not None:
        # a `parameter` layer is an nn.Parameter attribute, not a module
        bare = getattr(getattr(unit.target, "layer", None), "bare_parameter", False)
        getter = "get_parameter" if bare else "get_submodule"
        lines.append(f'        self.m = model.{getter}({py(unit.path)})')
    lines += ["", "    def forward(self, live):"]
    if len(before) == 1:
        lines.append(f"        {var(before[0])} = live  # {_shape(before[0].type)}")
    else:
        lines.append(f"        {', '.join(var(v) for v in before)} = live")
    if unit.op is not None:
        attr = "self.m" if unit.target is not None else None
        lines += _op_lines(unit.op, unit.module, low, var=var, attr=attr)
    else:  # an item of a list: called as nn.Sequential / the ModuleList loop calls it
        split = len(unit.args) - len(unit.keywords)
        args = [var(v) for v in unit.args[:split]] + [
            f"{k}={var(v)}" for k, v in zip(unit.keywords, unit.args[split:])]
        # a layer with extra tensors (a mask) binds them as the model's ModuleList loop does
        call = _item_call(unit.target, "self.m", args) if len(args) > 1 else f"self.m({args[0]})"
        lines.append(f"        {var(unit.outs[0])} = {call}  # {_shape(unit.outs[0].type)}")
    lines.append(f"        return {_pack(after, var)}")
    return "\n".join(lines) + "\n"
