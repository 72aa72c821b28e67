"""Element-wise math, comparisons, where, casts, position ranges, repeats and the channels-first
layer norm, each from another formula than the torch call the generated code makes (log through
log2, sin through cos, comparisons through the sign of a difference, where and repeats through
indexing), so that a wrong mapping in either shows as a difference."""
from __future__ import annotations

import math

import torch

from nnspec.interp.registry import kind

_UNARY = {
    "abs": lambda x: torch.maximum(x, -x),
    "neg": lambda x: 0 - x,
    "exp": lambda x: torch.pow(math.e, x),
    "log": lambda x: torch.log2(x) * math.log(2.0),
    "sin": lambda x: torch.cos(math.pi / 2 - x),
    "cos": lambda x: torch.sin(x + math.pi / 2),
    "sqrt": lambda x: torch.pow(x, 0.5),
}


@kind(*_UNARY)
def unary(layer, w, args, kwargs, ctx):
    return _UNARY[layer.kind](args[0])


# the sign of x - y that makes each comparison true
_SIGNS = {"eq": (0,), "ne": (-1, 1), "lt": (-1,), "le": (-1, 0), "gt": (1,), "ge": (0, 1)}


@kind(*_SIGNS)
def compare(layer, w, args, kwargs, ctx):
    x = args[0]
    y = args[1] if len(args) == 2 else torch.tensor(layer.other)
    x, y = torch.broadcast_tensors(*(t.long() if t.dtype == torch.bool else t for t in (x, y)))
    if x.is_floating_point() or y.is_floating_point():
        x, y = x.to(ctx.float_dtype), y.to(ctx.float_dtype)
    diff = x - y
    both_inf = torch.isinf(x) & torch.isinf(y) & (x.sign() == y.sign())
    diff = torch.where(both_inf, torch.zeros_like(diff), diff)   # inf - inf is not NaN here
    nan = torch.isnan(diff)   # torch.sign(NaN) is 0: NaN is told apart first
    out = torch.zeros(diff.shape, dtype=torch.bool)
    for s in _SIGNS[layer.kind]:
        out |= diff.sign() == s
    # NaN differs from everything: only ne holds
    return out | nan if layer.kind == "ne" else out & ~nan


@kind("where")
def where(layer, w, args, kwargs, ctx):
    cond, x = args[0], args[1]
    if len(args) == 3:
        y = args[2]
    else:
        other = layer.other
        dtype = ctx.float_dtype if isinstance(other, float) else \
            (torch.long if x.dtype == torch.bool else x.dtype)
        y = torch.full((), other, dtype=dtype)
    dtype = torch.promote_types(x.dtype, y.dtype)
    if dtype.is_floating_point:
        dtype = ctx.float_dtype
    cond, x, y = torch.broadcast_tensors(cond, x, y)
    out = y.to(dtype).clone()
    out[cond] = x.to(dtype)[cond]
    return out


@kind("cast")
def cast(layer, w, args, kwargs, ctx):
    x = args[0]
    if layer.dtype == "bool":
        return x != 0
    if layer.dtype == "long":
        return (torch.trunc(x) if x.is_floating_point() else x).to(torch.long)
    return x.to(ctx.float_dtype)


@kind("rsub", "rdiv")
def reversed_arith(layer, w, args, kwargs, ctx):
    x = args[0].to(ctx.float_dtype)
    if layer.kind == "rsub":
        return -(x - layer.other)   # exactly other - x
    return layer.other * torch.reciprocal(x)


@kind("positions")
def positions(layer, w, args, kwargs, ctx):
    x = args[0]
    n = x.shape[layer.dim % x.dim()]
    ids = torch.cumsum(torch.ones(n, dtype=torch.long), 0) - 1 + layer.start
    ids = ids.to(ctx.dtype(layer.dtype))
    return ids.unsqueeze(0).repeat(x.shape[0], 1)


@kind("repeat_interleave")
def repeat_interleave(layer, w, args, kwargs, ctx):
    x = args[0]
    d = layer.dim % x.dim()
    index = torch.div(torch.arange(x.shape[d] * layer.repeats), layer.repeats,
                      rounding_mode="floor")
    return x.index_select(d, index)


@kind("expand")
def expand(layer, w, args, kwargs, ctx):
    x = args[0]
    for d, size in enumerate(layer.shape, start=1):
        if size != -1 and x.shape[d] != size:
            x = x.index_select(d, torch.zeros(size, dtype=torch.long))
    return x


@kind("layernorm2d")
def layer_norm_2d(layer, w, args, kwargs, ctx):
    x = args[0]
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + layer.eps)
    if "weight" in w:
        y = y * w["weight"].reshape(1, -1, 1, 1)
    if "bias" in w:
        y = y + w["bias"].reshape(1, -1, 1, 1)
    return y
