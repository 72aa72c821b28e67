"""Runtime helpers for large-language-model layers: rotary position embeddings.

transformers' convention throughout (LlamaRotaryEmbedding, apply_rotary_pos_emb): each head's
features i and i + head_dim / 2 are rotated together by the angle position * inv_freq[i]
(`rotate_half`), and the frequencies follow transformers' `modeling_rope_utils.py` for the
default, linear, dynamic-NTK and llama3 scalings.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class RotaryEmbedding(nn.Module):
    """Rotates the heads of q or k [B, T, heads * head_dim] by their positions offset..offset+T-1.

    The frequencies are a non-persistent buffer (not in state_dict, as in transformers), kept in
    float64 and cast to the input's dtype only after cos/sin: a float32 table would put float32
    rounding into a float64 model.
    """

    def __init__(self, head_dim, theta=10000.0, scaling="default", factor=1.0,
                 original_max_position_embeddings=8192, low_freq_factor=1.0,
                 high_freq_factor=4.0):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.scaling = scaling
        self.factor = factor
        self.original_max_position_embeddings = original_max_position_embeddings
        self.low_freq_factor = low_freq_factor
        self.high_freq_factor = high_freq_factor
        self.register_buffer("inv_freq", self.frequencies(theta), persistent=False)

    def frequencies(self, base):
        steps = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        inv_freq = 1.0 / base ** steps
        if self.scaling == "linear":
            inv_freq = inv_freq / self.factor
        elif self.scaling == "llama3":
            # long wavelengths are slowed by `factor`, short ones kept, the band between blended
            old = self.original_max_position_embeddings
            wavelen = 2 * math.pi / inv_freq
            slow = torch.where(wavelen > old / self.low_freq_factor, inv_freq / self.factor,
                               inv_freq)
            smooth = (old / wavelen - self.low_freq_factor) / (
                self.high_freq_factor - self.low_freq_factor)
            blended = (1 - smooth) * slow / self.factor + smooth * slow
            medium = ((wavelen >= old / self.high_freq_factor)
                      & (wavelen <= old / self.low_freq_factor))
            inv_freq = torch.where(medium, blended, slow)
        return inv_freq

    def forward(self, x, offset=0):
        length = offset + x.shape[1]
        inv_freq = self.inv_freq
        if self.scaling == "dynamic" and length > self.original_max_position_embeddings:
            # dynamic NTK: a larger base once the sequence outgrows the trained length
            grow = self.factor * length / self.original_max_position_embeddings - (self.factor - 1)
            base = self.theta * grow ** (self.head_dim / (self.head_dim - 2))
            inv_freq = self.frequencies(base).to(inv_freq.device)
        positions = torch.arange(offset, length, dtype=torch.float64, device=inv_freq.device)
        angles = torch.outer(positions, inv_freq)
        angles = torch.cat((angles, angles), dim=-1)[:, None, :]  # (T, 1, head_dim)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        h = x.unflatten(-1, (-1, self.head_dim))  # (B, T, heads, head_dim)
        half = self.head_dim // 2
        rotated = torch.cat((-h[..., half:], h[..., :half]), dim=-1)
        return (h * cos + rotated * sin).flatten(2)
