"""Attention from its definition: project, split into heads, softmax(q k^T * scale + masks) v,
merge heads, project out. Tensors given by keyword bind by name; positional ones by type, as each
kind's documentation says."""
from __future__ import annotations

import math

import torch

from nnspec.interp.registry import kind

NEG_INF = float("-inf")


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _attend(q, k, v, heads, scale=None, additive=None, causal=False):
    """softmax over keys of (q k^T) * scale plus the additive mask [B, S] (and -inf at later keys
    when causal), times v; inputs and result are [B, T, D]."""
    q, k, v = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if additive is not None:
        scores = scores + additive[:, None, None, :]
    if causal:
        later = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(later, NEG_INF)
    return _merge(torch.matmul(torch.softmax(scores, dim=-1), v))


def _padding_mask(mask, dtype):
    """torch's key_padding_mask convention as an additive mask: True/nonzero is padding (-inf);
    a float mask is added to the scores as it is."""
    if mask is None:
        return None
    if mask.is_floating_point():
        return mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(mask != 0, NEG_INF)


def _linear(x, weight, bias):
    y = torch.matmul(x, weight.t())
    return y if bias is None else y + bias


def _mha(w, prefix, heads, query, key, value, key_padding_mask, causal):
    e = query.shape[-1]
    if prefix + "in_proj_weight" in w:
        wq, wk, wv = w[prefix + "in_proj_weight"].split(e)
    else:
        wq, wk, wv = (w[prefix + n] for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
    bias = w.get(prefix + "in_proj_bias")
    bq, bk, bv = bias.split(e) if bias is not None else (None, None, None)
    out = _attend(_linear(query, wq, bq), _linear(key, wk, bk), _linear(value, wv, bv), heads,
                  additive=_padding_mask(key_padding_mask, query.dtype), causal=causal)
    return _linear(out, w[prefix + "out_proj.weight"], w.get(prefix + "out_proj.bias"))


@kind("multihead_attention")
def multihead_attention(layer, w, args, kwargs, ctx):
    # by type: after the query, a last input [B, S] is key_padding_mask; others are key, value
    given, rest = {"query": args[0]}, ["key", "value"]
    total = len(args) + len(kwargs)
    for i, t in enumerate(args[1:], 1):
        if i == total - 1 and t.dim() == 2:
            given["key_padding_mask"] = t
        else:
            given[rest.pop(0)] = t
    given.update(kwargs)
    q = given["query"]
    k = given.get("key", q)
    v = given.get("value", k)
    return _mha(w, "", layer.num_heads, q, k, v, given.get("key_padding_mask"), layer.causal)


@kind("sdpa")
def sdpa(layer, w, args, kwargs, ctx):
    q, k, v = args[:3]
    # a positional extra binds by rank: [B, S] is the mask, [B, H, T, S] the bias
    extras = {("mask" if t.dim() == 2 else "bias"): t for t in args[3:]}
    extras.update(kwargs)
    mask, bias = extras.get("mask"), extras.get("bias")
    heads = layer.heads
    t, s = q.shape[1], k.shape[1]
    if layer.kv_heads:
        # grouped-query: query head h reads k/v head h // (heads / kv_heads)
        k, v = _share_heads(k, heads, layer.kv_heads), _share_heads(v, heads, layer.kv_heads)
    additive = torch.zeros(q.shape[0], heads, t, s, dtype=q.dtype)
    if mask is not None:
        # mask: nonzero = attend, 0 = padding, which adds the dtype's minimum to the score
        lowest = torch.finfo(q.dtype).min
        pad = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(mask == 0, lowest)
        additive = additive + pad[:, None, None, :]
    if bias is not None:
        additive = additive + bias
    i = torch.arange(t)[:, None]
    j = torch.arange(s)[None, :]
    hidden = torch.zeros(t, s, dtype=torch.bool)
    if layer.causal:
        hidden |= j > i
    if layer.window is not None:
        hidden |= i - j >= layer.window
    additive = additive.masked_fill(hidden, NEG_INF)
    return _attend_scores(q, k, v, heads, layer.scale, additive)


def _share_heads(x: torch.Tensor, heads: int, kv_heads: int) -> torch.Tensor:
    b, s, d = x.shape
    per = d // kv_heads
    groups = [x[..., (h // (heads // kv_heads)) * per:(h // (heads // kv_heads) + 1) * per]
              for h in range(heads)]
    return torch.cat(groups, dim=-1)


def _attend_scores(q, k, v, heads, scale, additive):
    """softmax over keys of (q k^T) * scale + additive [B, H, T, S], times v."""
    q, k, v = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale + additive
    return _merge(torch.matmul(torch.softmax(scores, dim=-1), v))


def _layer_norm(x, w, name, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * w[f"{name}.weight"]
    return y + w[f"{name}.bias"] if f"{name}.bias" in w else y


def _feed_forward(layer, w, x):
    h = _linear(x, w["linear1.weight"], w.get("linear1.bias"))
    if layer.activation == "relu":
        h = torch.clamp(h, min=0.0)
    else:
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
    return _linear(h, w["linear2.weight"], w.get("linear2.bias"))


def _residual(layer, w, x, norm, block):
    """Pre-norm: x + block(norm(x)); post-norm: norm(x + block(x))."""
    eps = layer.layer_norm_eps
    if layer.norm_first:
        return x + block(_layer_norm(x, w, norm, eps))
    return _layer_norm(x + block(x), w, norm, eps)


@kind("transformer_encoder_layer")
def transformer_encoder_layer(layer, w, args, kwargs, ctx):
    x = args[0]
    mask = args[1] if len(args) == 2 else kwargs.get("src_key_padding_mask")
    x = _residual(layer, w, x, "norm1",
                  lambda h: _mha(w, "self_attn.", layer.nhead, h, h, h, mask, layer.causal))
    return _residual(layer, w, x, "norm2", lambda h: _feed_forward(layer, w, h))


def _decoder_masks(args, kwargs):
    """Positional masks are tgt's then memory's, unless the first has the memory's length (and
    not x's) and a second one, if any, has x's length (and not the memory's)."""
    x, memory, masks = args[0], args[1], args[2:]
    t, s = x.shape[1], memory.shape[1]
    names = ["tgt_key_padding_mask", "memory_key_padding_mask"]
    if masks and masks[0].shape[1] == s != t and (
            len(masks) == 1 or masks[1].shape[1] == t != s):
        names.reverse()
    given = dict(zip(names, masks))
    given.update(kwargs)
    return given.get("tgt_key_padding_mask"), given.get("memory_key_padding_mask")


@kind("transformer_decoder_layer")
def transformer_decoder_layer(layer, w, args, kwargs, ctx):
    x, memory = args[0], args[1]
    tgt_mask, mem_mask = _decoder_masks(args, kwargs)
    x = _residual(layer, w, x, "norm1",
                  lambda h: _mha(w, "self_attn.", layer.nhead, h, h, h, tgt_mask, layer.causal))
    x = _residual(layer, w, x, "norm2",
                  lambda h: _mha(w, "multihead_attn.", layer.nhead, h, memory, memory, mem_mask,
                                 False))
    return _residual(layer, w, x, "norm3", lambda h: _feed_forward(layer, w, h))
