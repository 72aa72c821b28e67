"""What tensor parallelism changes in a plan, from nnspec.place.tensor's split of the model: each
rank holds 1/N of the split parameters (the replicated ones whole), 1/N of the activations and
FLOPs of the split layers, and adds all-reduces of activations: one after each row-parallel
layer in the forward pass and one of the input gradient of each column-parallel group in the
backward pass (Megatron-LM: two of each per transformer block, of batch x seq x hidden).

A tensor-parallel group lives inside one machine (the search tries divisors of the GPUs per
machine), so its all-reduces run over the machine's links. A ring all-reduce of S bytes over N
ranks sends 2 (N - 1) / N x S per rank. Activation checkpointing recomputes the forward pass and
with it the forward all-reduces of the checkpointed layers; they are counted twice then.
"""
from __future__ import annotations

from dataclasses import replace

from nnspec.ir import ModuleDef, iter_params
from nnspec.layers.base import numel
from nnspec.place.tensor import Share, TensorPlan
from nnspec.plan.costs import UnitCost, checkpointed


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _less(total: int, split: int, n: int) -> int:
    """`total` with its `split` part divided over n ranks."""
    return total - split + _ceil(split, n)


def split_units(units: tuple[UnitCost, ...], plan: TensorPlan,
                largest: int) -> tuple[UnitCost, ...]:
    """Each unit's cost on one rank of a tensor-parallel group (`largest`: the largest layer one
    rank holds, see largest_layer)."""
    out = []
    for u in units:
        share = plan.share_under(u.path) if u.path else Share()
        out.append(replace(u, params=_less(u.params, share.params, plan.n),
                           act_float=_less(u.act_float, share.activations, plan.n),
                           flops=_less(u.flops, share.flops, plan.n),
                           largest_layer=min(u.largest_layer, largest)))
    return tuple(out)


def largest_layer(ir: ModuleDef, plan: TensorPlan) -> int:
    """The most parameters one layer holds on one rank (ZeRO-3 gathers a layer at a time)."""
    layers: dict[str, int] = {}
    for name, shape in iter_params(ir):
        path = name.rpartition(".")[0]
        layers[path] = layers.get(path, 0) + numel(shape)
    for path, share in plan.shares.items():
        if path in layers:
            layers[path] = _less(layers[path], share.params, plan.n)
    return max(layers.values(), default=0)


def communication(plan: TensorPlan, units: tuple[UnitCost, ...], patterns: tuple[str, ...],
                  c: int) -> dict:
    """The all-reduces tensor parallelism adds, per micro-batch sample: by pipeline unit (a
    transformer block: 2 forward, 2 backward), with the bytes they reduce (c bytes an element)."""
    by_unit: dict[str, dict] = {}
    paths = sorted((u.path for u in units if u.path), key=len, reverse=True)
    recomputed = {u.path for u in units if u.path and checkpointed(u, patterns)}
    total = 0
    for a in plan.allreduces:
        unit = next((p for p in paths if a.at == p or a.at.startswith(p + ".")), a.at)
        row = by_unit.setdefault(unit, {"layer": unit, "forward": 0, "backward": 0,
                                        "bytes_per_sample": 0})
        times = 2 if a.direction == "forward" and unit in recomputed else 1
        row[a.direction] += times
        row["bytes_per_sample"] += times * a.elements * c
        total += times * a.elements * c
    return {"per_layer": list(by_unit.values()), "bytes_per_sample": total,
            "forward_allreduces": sum(r["forward"] for r in by_unit.values()),
            "backward_allreduces": sum(r["backward"] for r in by_unit.values())}


def comm_seconds(bytes_per_step: float, n: int, link_gbs: float) -> float:
    """Ring all-reduce time of `bytes_per_step` over n ranks on a link of link_gbs GB/s."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * bytes_per_step / (1e9 * link_gbs)
