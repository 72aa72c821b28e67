"""Fully connected layers, convolutions and embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnspec.layers.base import ntuple
from nnspec.interp.registry import kind


@kind("linear")
def linear(layer, w, args, kwargs, ctx):
    y = torch.matmul(args[0], w["weight"].t())
    return y + w["bias"] if "bias" in w else y


@kind("bilinear")
def bilinear(layer, w, args, kwargs, ctx):
    a, b = args
    y = torch.einsum("...i,oij,...j->...o", a, w["weight"], b)
    return y + w["bias"] if "bias" in w else y


def _pads(layer, dims: int, x: torch.Tensor) -> list[int]:
    """Per-side padding of each spatial dim, in F.pad's order (last dim first)."""
    k, d = ntuple(layer.kernel_size, dims), ntuple(layer.dilation, dims)
    if layer.padding == "same":
        # the total d*(k-1) split with the smaller half first, as torch does for 'same'
        sides = [((d[i] * (k[i] - 1)) // 2, d[i] * (k[i] - 1) - (d[i] * (k[i] - 1)) // 2)
                 for i in range(dims)]
    elif layer.padding == "valid":
        sides = [(0, 0)] * dims
    else:
        sides = [(p, p) for p in ntuple(layer.padding, dims)]
    out = []
    for before, after in reversed(sides):
        out += [before, after]
    return out


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


def _conv(x, weight, bias, layer, dims, groups, padding_mode="zeros"):
    pads = _pads(layer, dims, x)
    if any(pads):
        x = F.pad(x, pads, mode=_PAD_MODES[padding_mode])
    return _CONV[dims](x, weight, bias, stride=ntuple(layer.stride, dims), padding=0,
                       dilation=ntuple(layer.dilation, dims), groups=groups)


@kind("conv1d", "conv2d", "conv3d")
def conv(layer, w, args, kwargs, ctx):
    dims = int(layer.kind[-2])
    return _conv(args[0], w["weight"], w.get("bias"), layer, dims, layer.groups,
                 layer.padding_mode)


_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@kind("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose(layer, w, args, kwargs, ctx):
    dims = int(layer.kind[-2])
    n = {name: ntuple(getattr(layer, name), dims)
         for name in ("stride", "padding", "output_padding", "dilation")}
    return _CONV_T[dims](args[0], w["weight"], w.get("bias"), stride=n["stride"],
                         padding=n["padding"], output_padding=n["output_padding"],
                         groups=layer.groups, dilation=n["dilation"])


@kind("separable_conv2d")
def separable_conv2d(layer, w, args, kwargs, ctx):
    x = args[0]
    mid = _conv(x, w["depthwise.weight"], None, layer, 2, groups=x.shape[1])
    return F.conv2d(mid, w["pointwise.weight"], w.get("pointwise.bias"))


@kind("embedding")
def embedding(layer, w, args, kwargs, ctx):
    # padding_idx only stops the row's gradient; the lookup is the same
    return w["weight"][args[0]]


@kind("position_embedding")
def position_embedding(layer, w, args, kwargs, ctx):
    x = args[0]
    rows = w["weight"][layer.offset: layer.offset + x.shape[1]]
    return rows.unsqueeze(0).expand(x.shape[0], -1, -1)


@kind("sinusoidal_position_encoding")
def sinusoidal_position_encoding(layer, w, args, kwargs, ctx):
    x = args[0]
    length, width = x.shape[1], x.shape[2]
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    # PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))
    i = torch.arange(width, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, (2 * torch.div(i, 2, rounding_mode="floor")) / width)
    table = torch.where(i.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return x + table.to(x.dtype)


@kind("parameter")
def parameter(layer, w, args, kwargs, ctx):
    p = w[""]
    if layer.batch_dim:  # stored with its batch dim of 1: repeated, where model.py expands
        return p.repeat(args[0].shape[0], *([1] * (p.dim() - 1)))
    return p.unsqueeze(0).expand(args[0].shape[0], *p.shape)


@kind("zeros_like", "ones_like")
def fill_like(layer, w, args, kwargs, ctx):
    x = args[0]
    dtype = ctx.dtype(layer.dtype) if layer.dtype is not None else x.dtype
    fill = 0 if layer.kind == "zeros_like" else 1
    return torch.full(x.shape, fill, dtype=dtype)
