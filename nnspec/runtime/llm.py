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
import torch.nn.functional as F


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
        self.cache = None   # None: off; else the positions seen so far (generation)

    def start_cache(self):
        self.cache = 0

    def stop_cache(self):
        self.cache = None

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
        if self.cache is not None:
            # while generating with a cache, each call continues where the last one stopped
            offset, self.cache = offset + self.cache, self.cache + x.shape[1]
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


class KVCacheAttention(nn.Module):
    """Scaled dot-product attention over q [B, T, heads * d], k, v [B, S, kv_heads * d] that can
    keep k and v across calls for generation.

    After `start_cache()` each call appends its k and v to those of the calls before, and its
    queries are the latest positions: query i of a call after P cached keys sits at position
    P + i, which the causal mask and the window count from. `stop_cache()` drops the cache. A
    padding mask [B, S] (1 = attend) and a bias [B, heads or 1, T, S] are added to the scores
    when the cache is off.
    """

    def __init__(self, heads, kv_heads=None, causal=False, window=None, scale=None,
                 dropout=0.0):
        super().__init__()
        self.heads = heads
        self.kv_heads = kv_heads or heads
        self.causal = causal
        self.window = window
        self.scale = scale
        self.dropout = dropout
        self.cache = None   # None: off; else (k, v) so far, (None, None) before the first call

    def start_cache(self):
        self.cache = (None, None)

    def stop_cache(self):
        self.cache = None

    def forward(self, q, k, v, mask=None, bias=None):
        q = q.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, T, d)
        k = k.unflatten(-1, (self.kv_heads, -1)).transpose(1, 2)  # (B, kv_heads, S, d)
        v = v.unflatten(-1, (self.kv_heads, -1)).transpose(1, 2)
        past = 0
        if self.cache is not None:
            if mask is not None or bias is not None:
                raise RuntimeError("KVCacheAttention: a mask or bias cannot be cached")
            if self.cache[0] is not None:
                past = self.cache[0].shape[2]
                k = torch.cat((self.cache[0], k), dim=2)
                v = torch.cat((self.cache[1], v), dim=2)
            self.cache = (k, v)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.scores_mask(q, k, past, mask, bias),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and past == 0 and mask is None and bias is None
            and self.window is None,
            scale=self.scale, enable_gqa=self.kv_heads != self.heads)
        return out.transpose(1, 2).flatten(2)  # (B, T, heads * d)

    def scores_mask(self, q, k, past, mask, bias):
        """The additive float mask, or None when is_causal (or nothing) says it all."""
        if mask is None and bias is None and self.window is None and (past == 0 or not self.causal):
            return None
        scores = torch.zeros(q.shape[2], k.shape[2], dtype=q.dtype, device=q.device)
        if mask is not None:
            keep = (mask[:, None, None, :] != 0).to(q.dtype)
            scores = scores + (1.0 - keep) * torch.finfo(q.dtype).min
        if bias is not None:
            scores = scores + bias
        i = torch.arange(past, past + q.shape[2], device=q.device)[:, None]
        j = torch.arange(k.shape[2], device=q.device)[None, :]
        hidden = torch.zeros_like(i > j)
        if self.causal:
            hidden = hidden | (j > i)
        if self.window is not None:
            hidden = hidden | (i - j >= self.window)
        return scores.masked_fill(hidden, -math.inf)
