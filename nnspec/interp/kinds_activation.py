"""Activations and dropout, written from their defining formulas (torch.nn's documentation)."""
from __future__ import annotations

import math

import torch

from nnspec.interp.registry import kind


@kind("identity", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
      "stochastic_depth")
def identity(layer, w, args, kwargs, ctx):
    # every random layer is the identity in eval mode
    return args[0]


def _sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def _softplus(x, beta=1.0, threshold=20.0):
    bx = beta * x
    # log1p(exp(bx)) / beta, linear where bx > threshold (torch's rule)
    return torch.where(bx > threshold, x, torch.log1p(torch.exp(torch.clamp(bx, max=threshold)))
                       / beta)


_ELEMENTWISE = {
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "tanh": torch.tanh,
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * torch.tanh(_softplus(x)),
    "hardsigmoid": lambda x: torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),
    "hardswish": lambda x: x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0,
    "tanhshrink": lambda x: x - torch.tanh(x),
}


@kind(*_ELEMENTWISE)
def elementwise(layer, w, args, kwargs, ctx):
    return _ELEMENTWISE[layer.kind](args[0])


@kind("gelu")
def gelu(layer, w, args, kwargs, ctx):
    x = args[0]
    if layer.approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1.0 + torch.tanh(inner))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


@kind("leaky_relu")
def leaky_relu(layer, w, args, kwargs, ctx):
    x = args[0]
    return torch.where(x >= 0, x, layer.negative_slope * x)


@kind("elu")
def elu(layer, w, args, kwargs, ctx):
    x = args[0]
    return torch.where(x > 0, x, layer.alpha * torch.expm1(torch.clamp(x, max=0.0)))


@kind("softplus")
def softplus(layer, w, args, kwargs, ctx):
    return _softplus(args[0], layer.beta, layer.threshold)


@kind("hardtanh")
def hardtanh(layer, w, args, kwargs, ctx):
    return torch.clamp(args[0], layer.min_val, layer.max_val)


@kind("prelu")
def prelu(layer, w, args, kwargs, ctx):
    x = args[0]
    a = w["weight"]
    if a.numel() > 1:  # one slope per channel: dim 1 of the batched input
        a = a.reshape((1, -1) + (1,) * (x.dim() - 2))
    return torch.where(x >= 0, x, a * x)


@kind("softmax", "log_softmax")
def softmax(layer, w, args, kwargs, ctx):
    x = args[0]
    shifted = x - torch.amax(x, dim=layer.dim, keepdim=True)
    log_z = torch.log(torch.sum(torch.exp(shifted), dim=layer.dim, keepdim=True))
    out = shifted - log_z
    return out if layer.kind == "log_softmax" else torch.exp(out)
