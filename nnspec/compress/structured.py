"""Structured pruning: remove whole output channels (filters) of conv/linear layers, and the
matching inputs of every layer that consumes them, so the model becomes a smaller dense one.

The model is traced with torch.fx. Every tensor's dim 1 is described as channel spaces: a conv or
linear layer starts a new space; batch norm, activations, pooling and dropout pass it through;
`a + b` (residuals) joins the spaces of a and b, so their producers lose the same channels; `cat`
along dim 1 lays spaces side by side; `flatten(x, 1)` keeps a space with each channel spread over
its spatial positions. A space that reaches anything else (reshape, attention, the model's
output, the input, a layer not chosen for pruning) is left whole. Each prunable space keeps the
channels with the largest summed Ln norms of its producers' filters.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from nnspec.compress.checked import Prune
from nnspec.compress.errors import CompressError

PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus, nn.Identity,
                nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.MaxPool1d, nn.MaxPool2d,
                nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
PASS_FUNCTIONS = {"relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
                  "leaky_relu", "elu", "mish", "softplus", "dropout", "max_pool1d", "max_pool2d",
                  "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool2d",
                  "adaptive_max_pool2d", "hardtanh", "contiguous"}
JOIN = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}


class _Tracer(fx.Tracer):
    """Leaves: torch.nn modules and nnspec's runtime modules (which FX may not trace)."""

    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return super().is_leaf_module(m, name) or not type(m).__module__.startswith("torch.")


@dataclass
class _Groups:
    """Union-find over channel spaces, with what each space's group touches."""

    parent: dict[int, int] = field(default_factory=dict)
    size: dict[int, int] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    producers: dict[int, list[str]] = field(default_factory=dict)   # space -> conv/linear names
    norms: dict[int, list[str]] = field(default_factory=dict)       # space -> batch norms
    depthwise: dict[int, list[str]] = field(default_factory=dict)

    def new(self, size: int) -> int:
        i = len(self.parent)
        self.parent[i], self.size[i] = i, size
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            if self.size[a] != self.size[b]:
                self.blocked.update((a, b))
            self.parent[b] = a


Segments = list[tuple[int, int]]   # (space, positions per channel) laid out along dim 1


def _analyze(model: nn.Module, example: tuple):
    graph = _Tracer().trace(model)
    gm = fx.GraphModule(model, graph)
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(*example)
    modules = dict(model.named_modules())
    g = _Groups()
    seg: dict[fx.Node, Segments | None] = {}
    consumers: list[tuple[str, Segments]] = []
    produced: dict[str, int] = {}

    def block(node_arg):
        for a in _tensor_args(node_arg):
            for sp, _ in seg.get(a) or []:
                g.blocked.add(g.find(sp))

    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        channels = meta.shape[1] if meta is not None and hasattr(meta, "shape") and \
            len(meta.shape) >= 2 else None
        if node.op == "placeholder":
            seg[node] = [(_blocked_space(g, channels), 1)] if channels else None
            continue
        if node.op == "output":
            block(node.args)
            continue
        ins = [a for a in _tensor_args(node.args) if a in seg]
        first = seg.get(ins[0]) if ins else None
        if node.op == "call_module":
            mod = modules[node.target]
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and \
                    getattr(mod, "groups", 1) == 1:
                if first is not None:
                    consumers.append((node.target, first))
                if node.target in produced:   # a shared layer: the same filters, the same space
                    out = produced[node.target]
                else:
                    out = produced[node.target] = g.new(mod.weight.shape[0])
                    g.producers[out] = [node.target]
                seg[node] = [(out, 1)]
                if isinstance(mod, nn.Linear) and meta is not None and len(meta.shape) > 2:
                    g.blocked.add(out)   # a linear over the last dim of a 3-d tensor
                continue
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and first is not None and \
                    mod.groups == mod.in_channels == mod.out_channels and len(first) == 1:
                g.depthwise.setdefault(first[0][0], []).append(node.target)
                seg[node] = first
                continue
            if isinstance(mod, NORMS) and first is not None and len(first) == 1:
                g.norms.setdefault(first[0][0], []).append(node.target)
                seg[node] = first
                continue
            if isinstance(mod, PASS_MODULES) or type(mod).__name__ in ("GlobalAvgPool",
                                                                         "GlobalMaxPool"):
                seg[node] = first
                continue
            block(node.args)
            seg[node] = _fresh(g, channels)
            continue
        if node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target))
            if node.target in JOIN or name in ("add", "sub", "mul"):
                tensors = [seg.get(a) for a in ins]
                if len(tensors) == 2 and all(t is not None and len(t) == 1 for t in tensors):
                    g.join(tensors[0][0][0], tensors[1][0][0])
                    seg[node] = tensors[0]
                elif len(tensors) == 1:
                    seg[node] = tensors[0]   # x * 0.5
                else:
                    block(node.args)
                    seg[node] = _fresh(g, channels)
                continue
            if name in PASS_FUNCTIONS:
                seg[node] = first
                continue
            if name == "flatten" and first is not None and _flatten_from(node) == 1:
                in_meta = ins[0].meta["tensor_meta"]
                spread = 1
                for d in in_meta.shape[2:]:
                    spread *= d
                seg[node] = [(sp, f * spread) for sp, f in first]
                continue
            if name == "cat" and _cat_dim(node) == 1:
                parts = [seg.get(a) for a in _tensor_args(node.args[0])]
                if all(p is not None for p in parts):
                    seg[node] = [s for p in parts for s in p]
                    continue
            block(node.args)
            seg[node] = _fresh(g, channels)
            continue
        seg[node] = None
    _join_shared_inputs(g, consumers)
    return g, consumers, modules


def _join_shared_inputs(g: _Groups, consumers: list[tuple[str, Segments]]) -> None:
    """A layer applied to several tensors reads all of them with the same input weights."""
    first: dict[str, Segments] = {}
    for name, segments in consumers:
        if name not in first:
            first[name] = segments
            continue
        other = first[name]
        if len(other) == len(segments) and all(a[1] == b[1] for a, b in zip(other, segments)):
            for a, b in zip(other, segments):
                g.join(a[0], b[0])
        else:
            for sp, _ in other + segments:
                g.blocked.add(sp)


def _tensor_args(args):
    out = []
    for a in args if isinstance(args, (tuple, list)) else [args]:
        if isinstance(a, fx.Node):
            out.append(a)
        elif isinstance(a, (tuple, list)):
            out += _tensor_args(a)
        elif isinstance(a, dict):
            out += _tensor_args(list(a.values()))
    return out


def _blocked_space(g: _Groups, channels: int) -> int:
    sp = g.new(channels)
    g.blocked.add(sp)
    return sp


def _fresh(g: _Groups, channels: int | None) -> Segments | None:
    return [(_blocked_space(g, channels), 1)] if channels else None


def _flatten_from(node: fx.Node) -> int:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)


def _cat_dim(node: fx.Node) -> int:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)


# ---- choosing and cutting ------------------------------------------------------------------------

def prune_channels(model: nn.Module, spec, directives: tuple[Prune, ...], example: tuple):
    """A smaller copy of `model` without the pruned channels, the new spec text, and its Spec.

    Raises:
        CompressError: nothing could be pruned, or the smaller model cannot be written back.
    """
    import copy

    from nnspec.compress.writeback import write_back

    model = copy.deepcopy(model).eval()
    g, consumers, modules = _analyze(model, example)
    amount = {name: d for d in directives for name in d.layers}
    roots: dict[int, list[int]] = {}
    for sp in g.parent:
        roots.setdefault(g.find(sp), []).append(sp)
    keep: dict[int, torch.Tensor] = {}
    skipped = []
    for root, spaces in roots.items():
        producers = [p for sp in spaces for p in g.producers.get(sp, [])]
        if not producers or not any(p in amount for p in producers):
            continue
        if any(g.find(sp) in g.blocked or sp in g.blocked for sp in spaces) or \
                not all(p in amount for p in producers):
            skipped += [p for p in producers if p in amount]
            continue
        d = amount[producers[0]]
        score = sum(modules[p].weight.detach().flatten(1).norm(p=d.norm, dim=1)
                    for p in producers)
        n_keep = max(1, int(round(g.size[root] * (1 - d.amount))))
        chosen = score.topk(n_keep).indices.sort().values
        for sp in spaces:
            keep[sp] = chosen
    if not keep:
        raise CompressError("channel pruning found no channels it can remove"
                            + (f" (left whole: {', '.join(skipped)})" if skipped else ""),
                            "prune layers whose outputs feed convolutions or linear layers, not "
                            "the model's output")
    done: set[str] = set()   # shared layers appear more than once
    with torch.no_grad():
        for sp, idx in keep.items():
            for cut, names in ((_cut_out, g.producers), (_cut_norm, g.norms),
                               (_cut_depthwise, g.depthwise)):
                for name in names.get(sp, []):
                    if name not in done:
                        cut(modules[name], idx)
                        done.add(name)
        for name, segments in consumers:
            if any(sp in keep for sp, _ in segments) and f"in:{name}" not in done:
                _cut_in(modules[name], _input_index(segments, keep, g))
                done.add(f"in:{name}")
    text, new_spec = write_back(spec, model)
    return model, text, new_spec


def _input_index(segments: Segments, keep: dict[int, torch.Tensor], g: _Groups) -> torch.Tensor:
    parts, offset = [], 0
    for sp, spread in segments:
        channels = keep.get(sp, torch.arange(g.size[sp]))
        idx = (channels[:, None] * spread + torch.arange(spread)[None, :]).flatten()
        parts.append(idx + offset)
        offset += g.size[sp] * spread
    return torch.cat(parts)


def _cut_out(mod: nn.Module, idx: torch.Tensor) -> None:
    mod.weight = nn.Parameter(mod.weight[idx].clone())
    if mod.bias is not None:
        mod.bias = nn.Parameter(mod.bias[idx].clone())
    if isinstance(mod, nn.Linear):
        mod.out_features = len(idx)
    else:
        mod.out_channels = len(idx)


def _cut_in(mod: nn.Module, idx: torch.Tensor) -> None:
    mod.weight = nn.Parameter(mod.weight[:, idx].clone())
    if isinstance(mod, nn.Linear):
        mod.in_features = len(idx)
    else:
        mod.in_channels = len(idx)


def _cut_norm(mod: nn.Module, idx: torch.Tensor) -> None:
    if mod.weight is not None:
        mod.weight = nn.Parameter(mod.weight[idx].clone())
        mod.bias = nn.Parameter(mod.bias[idx].clone())
    if mod.running_mean is not None:
        mod.running_mean = mod.running_mean[idx].clone()
        mod.running_var = mod.running_var[idx].clone()
    mod.num_features = len(idx)


def _cut_depthwise(mod: nn.Module, idx: torch.Tensor) -> None:
    _cut_out(mod, idx)
    mod.in_channels = mod.groups = len(idx)
