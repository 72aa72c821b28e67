"""Tensor plumbing: arithmetic, reshaping, splitting, reductions, padding and resizing. Dims are
torch dims (0 is the batch); shapes given by a spec leave the batch out."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from nnspec.interp.registry import kind

_ARITH = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


@kind(*_ARITH)
def arith(layer, w, args, kwargs, ctx):
    x = args[0]
    other = args[1] if len(args) == 2 else layer.other
    if not isinstance(other, torch.Tensor) and isinstance(other, float) \
            and not x.is_floating_point():
        x = x.to(ctx.float_dtype)  # an integer tensor with a float number is float
    return _ARITH[layer.kind](x, other)


@kind("pow")
def pow_(layer, w, args, kwargs, ctx):
    # torch.pow, where generated code writes the operator `**`
    return torch.pow(args[0], args[1] if len(args) == 2 else layer.other)


@kind("matmul")
def matmul(layer, w, args, kwargs, ctx):
    return torch.matmul(args[0], args[1])


@kind("cat")
def cat(layer, w, args, kwargs, ctx):
    return torch.cat(args, dim=layer.dim)


@kind("stack")
def stack(layer, w, args, kwargs, ctx):
    return torch.stack(args, dim=layer.dim)


@kind("flatten")
def flatten(layer, w, args, kwargs, ctx):
    x = args[0]
    a, b = layer.start_dim % x.dim(), layer.end_dim % x.dim()
    return x.reshape(x.shape[:a] + (-1,) + x.shape[b + 1:])


@kind("reshape")
def reshape(layer, w, args, kwargs, ctx):
    x = args[0]
    return x.reshape((x.shape[0],) + tuple(layer.shape))


@kind("permute")
def permute(layer, w, args, kwargs, ctx):
    return args[0].permute(*layer.dims)


@kind("transpose")
def transpose(layer, w, args, kwargs, ctx):
    return args[0].transpose(layer.dim0, layer.dim1)


@kind("squeeze")
def squeeze(layer, w, args, kwargs, ctx):
    x = args[0]
    dims = (layer.dim,) if isinstance(layer.dim, int) else layer.dim
    drop = {d % x.dim() for d in dims}
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in drop))


@kind("unsqueeze")
def unsqueeze(layer, w, args, kwargs, ctx):
    x = args[0]
    d = layer.dim % (x.dim() + 1)
    return x.reshape(x.shape[:d] + (1,) + x.shape[d:])


def _pieces(x, dim, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(x.narrow(dim, start, size))
        start += size
    return tuple(out)


@kind("split")
def split(layer, w, args, kwargs, ctx):
    x = args[0]
    dim = layer.dim % x.dim()
    n, sizes = x.shape[dim], layer.split_size_or_sections
    if isinstance(sizes, int):
        sizes = [sizes] * (n // sizes) + ([n % sizes] if n % sizes else [])
    return _pieces(x, dim, sizes)


@kind("chunk")
def chunk(layer, w, args, kwargs, ctx):
    x = args[0]
    dim = layer.dim % x.dim()
    n = x.shape[dim]
    size = -(-n // layer.chunks)  # pieces of ceil(n / chunks); fewer pieces when that fits
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    return _pieces(x, dim, sizes)


@kind("select")
def select(layer, w, args, kwargs, ctx):
    x = args[0]
    dim = layer.dim % x.dim()
    index = layer.index % x.shape[dim]
    return x.narrow(dim, index, 1).squeeze(dim)


@kind("narrow")
def narrow(layer, w, args, kwargs, ctx):
    x = args[0]
    dim = layer.dim % x.dim()
    return x.narrow(dim, layer.start % x.shape[dim], layer.length)


@kind("mean", "sum")
def reduce(layer, w, args, kwargs, ctx):
    x = args[0]
    dims = (layer.dim,) if isinstance(layer.dim, int) else layer.dim
    dims = tuple(sorted(d % x.dim() for d in dims))
    if layer.kind == "mean":
        return torch.mean(x, dim=dims, keepdim=layer.keepdim)
    if not x.is_floating_point():
        x = x.long()  # integer and bool tensors sum to long
    return torch.sum(x, dim=dims, keepdim=layer.keepdim)


@kind("pad")
def pad(layer, w, args, kwargs, ctx):
    x = args[0]
    if layer.mode == "constant":
        return F.pad(x, list(layer.pad), value=layer.value or 0.0)
    # the non-constant modes take [B, C, ...k dims]; a per-sample input of k dims has no C
    squeeze = x.dim() == len(layer.pad) // 2 + 1
    y = F.pad(x.unsqueeze(1) if squeeze else x, list(layer.pad), mode=layer.mode)
    return y.squeeze(1) if squeeze else y


@kind("upsample")
def upsample(layer, w, args, kwargs, ctx):
    return F.interpolate(args[0], size=layer.size, scale_factor=layer.scale_factor,
                         mode=layer.mode, align_corners=layer.align_corners)


@kind("channel_shuffle")
def channel_shuffle(layer, w, args, kwargs, ctx):
    x = args[0]
    b, c = x.shape[:2]
    g = layer.groups
    return x.reshape(b, g, c // g, *x.shape[2:]).transpose(1, 2).reshape(x.shape)
