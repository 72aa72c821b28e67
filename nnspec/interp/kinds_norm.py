"""Normalization layers in eval mode, from their formulas: (x - mean) / sqrt(var + eps) with a
biased variance, then the affine scale and shift."""
from __future__ import annotations

import torch

from nnspec.interp.registry import kind


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A [C] vector shaped to scale dim 1 of x."""
    return v.reshape((1, -1) + (1,) * (x.dim() - 2))


def _normalize(x, dims, eps):
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _affine(y, w, x):
    if "weight" in w:
        y = y * _per_channel(w["weight"], x)
    if "bias" in w:
        y = y + _per_channel(w["bias"], x)
    return y


@kind("batchnorm1d", "batchnorm2d", "batchnorm3d", "instancenorm1d", "instancenorm2d",
      "instancenorm3d")
def batch_norm(layer, w, args, kwargs, ctx):
    x = args[0]
    if "running_mean" in w:
        # eval mode uses the running statistics whenever they are tracked
        mean, var = _per_channel(w["running_mean"], x), _per_channel(w["running_var"], x)
        y = (x - mean) / torch.sqrt(var + layer.eps)
    elif layer.kind.startswith("batchnorm"):
        # without running stats batch norm uses the batch's own, even in eval
        y = _normalize(x, [0] + list(range(2, x.dim())), layer.eps)
    else:
        y = _normalize(x, list(range(2, x.dim())), layer.eps)
    return _affine(y, w, x)


@kind("layernorm")
def layer_norm(layer, w, args, kwargs, ctx):
    x = args[0]
    y = _normalize(x, list(range(x.dim() - layer.dims, x.dim())), layer.eps)
    if "weight" in w:
        y = y * w["weight"]
    if "bias" in w:
        y = y + w["bias"]
    return y


@kind("groupnorm")
def group_norm(layer, w, args, kwargs, ctx):
    x = args[0]
    grouped = x.reshape(x.shape[0], layer.num_groups, -1)
    y = _normalize(grouped, [2], layer.eps).reshape(x.shape)
    return _affine(y, w, x)


@kind("rmsnorm")
def rms_norm(layer, w, args, kwargs, ctx):
    x = args[0]
    eps = layer.eps if layer.eps is not None else torch.finfo(x.dtype).eps
    dims = list(range(x.dim() - layer.dims, x.dim()))
    y = x / torch.sqrt((x * x).mean(dim=dims, keepdim=True) + eps)
    return y * w["weight"] if "weight" in w else y
