"""Tensor parallelism simulated in one process, to test a TensorPlan's arithmetic: the model's
forward pass runs layer by layer on the interpreter's kind functions, and every tensor the plan
splits is held as n per-rank slices. A column-parallel linear computes each rank's slice of its
output features (section by section for a fused q/k/v projection), elementwise ops and attention
(with heads / n) run per rank, and a row-parallel linear sums the ranks' partial products (the
all-reduce) before adding its bias. If the plan split anything that cannot be split, the result
differs from the unsplit interpreter's."""
from __future__ import annotations

import torch

from nnspec.interp.registry import Ctx, rule
from nnspec.layers.base import T
from nnspec.place.tensor import TensorPlan
from nnspec.place.tensor_graph import Call, flatten


class Shards(list):
    """A tensor split by its last dim, one slice per rank."""


def _type(x: torch.Tensor) -> T:
    dtype = "float" if x.is_floating_point() else "bool" if x.dtype == torch.bool else "long"
    return T(tuple(x.shape[1:]), dtype)


def _rows(sections: tuple[int, ...], rank: int, n: int) -> torch.Tensor:
    """The output features rank `rank` computes: its slice of every section."""
    parts, start = [], 0
    for size in sections:
        part = size // n
        parts.append(torch.arange(start + rank * part, start + (rank + 1) * part))
        start += size
    return torch.cat(parts)


def _apply(layer, w, ins: list, keywords: tuple[str, ...]) -> list[torch.Tensor]:
    split = len(ins) - len(keywords)
    ctx = Ctx([_type(x) for x in ins], torch.float64)
    out = rule(layer.kind)(layer, w, ins[:split], dict(zip(keywords, ins[split:])), ctx)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _per_rank(layer, n: int):
    """The layer as one rank runs it on its slices."""
    if layer.kind in ("sdpa", "kv_attention"):
        update = {"heads": layer.heads // n}
        if layer.kv_heads:
            update["kv_heads"] = layer.kv_heads // n
        return layer.model_copy(update=update)
    if layer.kind == "split":
        sizes = layer.split_size_or_sections
        sizes = sizes // n if isinstance(sizes, int) else tuple(s // n for s in sizes)
        return layer.model_copy(update={"split_size_or_sections": sizes})
    return layer


class _Sim:
    def __init__(self, plan: TensorPlan, state: dict):
        self.plan, self.state, self.n = plan, state, plan.n

    def weights(self, call: Call) -> dict[str, torch.Tensor]:
        if call.leaf is None:
            return {}
        names = {**call.leaf.layer.params(call.leaf.ins), **call.leaf.layer.buffers(call.leaf.ins)}
        return {name: self.state[f"{call.path}.{name}" if name else call.path] for name in names}

    def run(self, call: Call, ins: list) -> list:
        w, style = self.weights(call), self.plan.splits.get(call.path or "")
        if call.layer.kind == "linear" and style == "column":
            assert not isinstance(ins[0], Shards), f"{call.path}: a column-parallel input is whole"
            sections = self.plan.sections.get(call.path, (w["weight"].shape[0],))
            out = Shards()
            for r in range(self.n):
                rows = _rows(sections, r, self.n)
                y = ins[0] @ w["weight"][rows].t()
                out.append(y + w["bias"][rows] if "bias" in w else y)
            return [out]
        if call.layer.kind == "linear" and style == "row":
            assert isinstance(ins[0], Shards), f"{call.path}: a row-parallel input is split"
            cols = w["weight"].shape[1] // self.n
            y = sum(x @ w["weight"][:, r * cols:(r + 1) * cols].t() for r, x in enumerate(ins[0]))
            return [y + w["bias"] if "bias" in w else y]
        if not any(isinstance(x, Shards) for x in ins):
            return _apply(call.layer, w, ins, call.keywords)
        layer = _per_rank(call.layer, self.n)
        per_rank = [_apply(layer, w, [x[r] if isinstance(x, Shards) else x for x in ins],
                           call.keywords) for r in range(self.n)]
        return [Shards(outs) for outs in zip(*per_rank)]


def simulate(ir, plan: TensorPlan, state: dict, inputs: list) -> list[torch.Tensor]:
    """The model's outputs computed the tensor-parallel way the plan says (eval mode)."""
    g = flatten(ir)
    sim = _Sim(plan, state)
    values: dict[int, object] = dict(zip(g.inputs, inputs))
    with torch.no_grad():
        for call in g.calls:
            outs = sim.run(call, [values[t] for t in call.ins])
            values.update(zip(call.outs, outs))
    outs = [values[t] for t in g.outputs]
    assert not any(isinstance(x, Shards) for x in outs), "a model output is left split"
    return outs  # type: ignore[return-value]
