"""Rotary position embeddings from their definition, one frequency at a time in float64: feature
i of each head turns with feature i + head_dim / 2 by the angle position * inv_freq[i]."""
from __future__ import annotations

import math

import torch

from nnspec.interp.kinds_attention import sdpa
from nnspec.interp.registry import kind


def _inverse_frequencies(layer, length: int) -> list[float]:
    d = layer.head_dim
    base = layer.theta
    if layer.scaling == "dynamic" and length > layer.original_max_position_embeddings:
        ratio = length / layer.original_max_position_embeddings
        base = base * (layer.factor * ratio - layer.factor + 1) ** (d / (d - 2))
    out = []
    for i in range(d // 2):
        f = base ** (-2 * i / d)
        if layer.scaling == "linear":
            f = f / layer.factor
        elif layer.scaling == "llama3":
            old = layer.original_max_position_embeddings
            wavelength = 2 * math.pi / f
            if wavelength > old / layer.low_freq_factor:
                f = f / layer.factor
            elif wavelength >= old / layer.high_freq_factor:
                s = (old / wavelength - layer.low_freq_factor) / (
                    layer.high_freq_factor - layer.low_freq_factor)
                f = (1 - s) * f / layer.factor + s * f
        out.append(f)
    return out


@kind("rotary")
def rotary(layer, w, args, kwargs, ctx):
    x = args[0]
    b, t, width = x.shape
    d, half = layer.head_dim, layer.head_dim // 2
    freqs = torch.tensor(_inverse_frequencies(layer, t), dtype=torch.float64)
    angle = torch.arange(t, dtype=torch.float64)[:, None] * freqs[None, :]   # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    heads = x.reshape(b, t, width // d, d)
    first, second = heads[..., :half], heads[..., half:]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    turned = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
    return turned.reshape(b, t, width)


@kind("kv_attention")
def kv_attention(layer, w, args, kwargs, ctx):
    # without a cache it is sdpa: the interpreter runs one whole forward, never generation
    return sdpa(layer, w, args, kwargs, ctx)
