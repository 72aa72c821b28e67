"""What each pipeline unit of a model costs, read off the IR: parameters, the largest single layer,
forward FLOPs, and the activations its forward pass keeps for the backward pass.

The units are the pipeline partitioner's (nnspec.place.partition.units_of: `conv1`, `layer1.0`,
`transformer.h.3`), so the per-stage figures use the same cut as the emitted PipelineModule and
activation checkpointing works on the blocks people name.

Activations are counted per sample as the outputs of every layer inside the unit: the tensors
autograd saves for backward are, to a first approximation, each layer's input, which is the output
of the layer before it. Layers that return views of their input (reshape, split, permute, ...)
allocate nothing. Attention is counted by its output alone: the flash/memory-efficient kernels
PyTorch uses on GPUs keep only a per-row log-sum-exp, not the T x T score matrix.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from nnspec.ir import Leaf, ModuleDef, Op, Seq, count_params, largest_layer
from nnspec.layers.base import T, numel

# layer kinds whose outputs are views of their inputs (no new memory)
VIEW_KINDS = frozenset({"flatten", "reshape", "split", "chunk", "narrow", "select", "squeeze",
                        "unsqueeze", "permute", "transpose", "identity", "expand"})
DTYPE_BYTES = {"long": 8, "int": 4, "bool": 1}


@dataclass(frozen=True)
class UnitCost:
    """One pipeline unit's costs; activation sizes are elements per sample, split by dtype so the
    training precision can be applied later."""

    path: str
    label: str
    kind: str                   # block name or layer kind
    params: int
    largest_layer: int          # parameters of its largest single layer (DeepSpeed's view)
    flops: int                  # forward FLOPs per sample
    act_float: int              # float elements kept for backward, per sample
    act_other_bytes: int        # bytes of integer/bool tensors kept, per sample
    in_float: int               # float elements of its inputs, per sample
    in_other_bytes: int
    block: bool                 # a block (not a single layer): a checkpointing candidate

    def act_bytes(self, c: int) -> int:
        return self.act_float * c + self.act_other_bytes

    def in_bytes(self, c: int) -> int:
        return self.in_float * c + self.in_other_bytes


@dataclass(frozen=True)
class ModelCosts:
    """The units of a model in forward order, and where stages may start."""

    units: tuple[UnitCost, ...]
    params: int                 # unique parameters (spec.summary()["params"])
    flops: int                  # forward FLOPs per sample (spec.summary()["flops"])
    largest_layer: int
    input_float: int            # the model inputs, per sample
    input_other_bytes: int
    largest_output: int         # elements of the largest single float output (e.g. the logits)


def model_costs(root: ModuleDef) -> ModelCosts:
    """Per-unit costs of a model's IR."""
    from nnspec.place.partition import units_of

    part = units_of(root)
    units = []
    biggest = [0]
    seen: set[int] = set()  # a module called by several units: its layers count once
    for u in part.units:
        first = u.target is None or id(u.target) not in seen
        if u.target is not None:
            seen.add(id(u.target))
        acts = _Acts()
        if u.target is None:
            acts.op(u.op.layer, _op_ins(u.op), tuple(v.type for v in u.op.outs))
        elif isinstance(u.target, Leaf) and u.op is not None:
            acts.op(u.target.layer, _op_ins(u.op), tuple(v.type for v in u.op.outs))
        else:
            acts.child(u.target)
        biggest[0] = max(biggest[0], acts.largest)
        in_f, in_o = _split(t.type for t in u.args)
        units.append(UnitCost(u.path, u.label, u.kind, u.params, largest_layer(u.target) if first
                              else 0, acts.flops, acts.float, acts.other, in_f, in_o,
                              block=isinstance(u.target, (ModuleDef, Seq))))
    in_f, in_o = _split(v.type for v in root.inputs)
    return ModelCosts(tuple(units), count_params(root), sum(u.flops for u in units),
                      max((u.largest_layer for u in units), default=0), in_f, in_o, biggest[0])


def checkpoint_region(unit: UnitCost, patterns: tuple[str, ...]) -> str | None:
    """The outermost module that activation checkpointing patterns name around this unit (the
    unit itself, or a block it was flattened out of), or None. A pattern names a module by its
    path (fnmatch: `transformer.h.*`) or a block by its name (`Block`), as nnspec's runtime
    reads it."""
    if not unit.path or not patterns:
        return None
    parts = unit.path.split(".")
    for i in range(1, len(parts) + 1):
        path = ".".join(parts[:i])
        kind = unit.kind if i == len(parts) else None
        if any(fnmatch.fnmatchcase(path, p) or p == kind for p in patterns):
            return path
    return None


def checkpointed(unit: UnitCost, patterns: tuple[str, ...]) -> bool:
    """Whether the unit's forward is recomputed in the backward pass."""
    return checkpoint_region(unit, patterns) is not None


def regions(units, patterns: tuple[str, ...]) -> list[tuple[str | None, list[UnitCost]]]:
    """Consecutive units grouped by the checkpointed module they belong to (None: not
    checkpointed, one unit per group). A functional op (`tok + pos`) between two units of one
    checkpointed module belongs to it."""
    units = list(units)
    keys = [checkpoint_region(u, patterns) for u in units]
    for i, u in enumerate(units):
        if not u.path and i > 0 and keys[i - 1] is not None:
            after = next((keys[j] for j in range(i + 1, len(units)) if units[j].path), None)
            if after == keys[i - 1]:
                keys[i] = after
    out: list[tuple[str | None, list[UnitCost]]] = []
    for key, u in zip(keys, units):
        if key is not None and out and out[-1][0] == key:
            out[-1][1].append(u)
        else:
            out.append((key, [u]))
    return out


def recomputed_flops(units, patterns: tuple[str, ...]) -> int:
    """Forward FLOPs per sample that checkpointing runs a second time in the backward pass."""
    return sum(u.flops for key, group in regions(units, patterns) if key for u in group)


def block_patterns(costs: ModelCosts) -> tuple[str, ...]:
    """Checkpointing patterns that cover the model's repeated blocks: `transformer.h.*`,
    `layer1.*`, ... (the parent of every list item that is a block), else every block unit."""
    parents: list[str] = []
    for u in costs.units:
        if u.block and u.params:
            head, _, last = u.path.rpartition(".")
            pattern = f"{head}.*" if head and last.isdigit() else u.path
            if pattern not in parents:
                parents.append(pattern)
    return tuple(parents)


class _Acts:
    """Accumulates the activations and FLOPs of the leaf-level ops of a child module."""

    def __init__(self):
        self.float = self.other = self.flops = self.largest = 0

    def op(self, layer, ins: list[T], outs: tuple[T, ...]) -> None:
        self.flops += layer.flops(ins, outs)
        if layer.kind in VIEW_KINDS:
            return
        f, o = _split(outs)
        self.float += f
        self.other += o
        self.largest = max([self.largest] + [numel(t.shape) for t in outs if t.dtype == "float"])

    def child(self, child) -> None:
        if isinstance(child, Leaf):
            out = child.layer.infer(child.ins)
            self.op(child.layer, list(child.ins), out if isinstance(out, tuple) else (out,))
        elif isinstance(child, Seq):
            for item in child.items:
                self.child(item)
        else:
            self.module(child)

    def module(self, module: ModuleDef) -> None:
        for op in module.ops:
            if op.target is None:
                self.op(op.layer, _op_ins(op), tuple(v.type for v in op.outs))
            elif isinstance(op.target, Leaf):
                self.op(op.target.layer, _op_ins(op), tuple(v.type for v in op.outs))
            else:
                self.child(op.target)


def _op_ins(op: Op) -> list[T]:
    return [v.type for v in op.args] + [v.type for v in op.kwargs.values()]


def _split(types) -> tuple[int, int]:
    """(float elements, bytes of everything else) of some tensor types."""
    f = o = 0
    for t in types:
        if t.dtype == "float":
            f += numel(t.shape)
        else:
            o += numel(t.shape) * DTYPE_BYTES.get(t.dtype, 8)
    return f, o
