"""Runtime helpers for sequence layers: position tables, recurrent nets that return only their
output sequence, and attention modules that keep torch.nn's state_dict names.

The attention helpers call `F.multi_head_attention_forward` themselves instead of going through
`nn.MultiheadAttention.forward`, which in eval mode under no_grad may switch to a fused "fast path"
(`torch._native_multi_head_attention`, `torch._transformer_encoder_layer_fwd`). Skipping it keeps
the output and the operations run (and so torch.utils.flop_counter's count) the same in training
and inference; the parameters, their names and the math are torch.nn's.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PositionEmbedding(nn.Module):
    """A learned position table `weight` [num_positions, D]; returns rows offset..offset+T-1 for an
    input of sequence length T (its dim 1), expanded over the batch."""

    def __init__(self, num_positions, embedding_dim, offset=0):
        super().__init__()
        self.offset = offset
        self.weight = nn.Parameter(torch.empty(num_positions, embedding_dim))
        nn.init.normal_(self.weight)

    def forward(self, x):
        ids = torch.arange(self.offset, self.offset + x.shape[1], device=self.weight.device)
        return F.embedding(ids, self.weight).unsqueeze(0).expand(x.shape[0], -1, -1)


class SinusoidalPositionEncoding(nn.Module):
    """Adds the fixed sin/cos position encodings of "Attention Is All You Need" to [B, T, D]; the
    table is a non-persistent buffer (not in state_dict)."""

    def __init__(self, d_model, max_len=5000):
        super().__init__()
        # computed and kept in float64, and cast to the input's dtype in forward: a float32 table
        # would put float32 rounding into a float64 model
        position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        steps = torch.arange(0, d_model, 2, dtype=torch.float64)
        div = torch.exp(steps * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x):
        return x + self.pe[: x.shape[1]].to(x.dtype)


class SequenceRNN(nn.RNN):
    """nn.RNN with batch_first=True that returns only its output sequence [B, T, H*dirs] (or, with
    last=True, its last time step [B, H*dirs]); parameters keep nn.RNN's names."""

    def __init__(self, *args, last=False, **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.last = last

    def forward(self, x):
        out = super().forward(x)[0]
        return out[:, -1] if self.last else out


class SequenceLSTM(nn.LSTM):
    """nn.LSTM with batch_first=True that returns only its output sequence [B, T, H*dirs] (or, with
    last=True, its last time step [B, H*dirs]); parameters keep nn.LSTM's names."""

    def __init__(self, *args, last=False, **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.last = last

    def forward(self, x):
        out = super().forward(x)[0]
        return out[:, -1] if self.last else out


class SequenceGRU(nn.GRU):
    """nn.GRU with batch_first=True that returns only its output sequence [B, T, H*dirs] (or, with
    last=True, its last time step [B, H*dirs]); parameters keep nn.GRU's names."""

    def __init__(self, *args, last=False, **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.last = last

    def forward(self, x):
        out = super().forward(x)[0]
        return out[:, -1] if self.last else out


class MultiheadAttentionLayer(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch_first) returning only the attention output [B, T, E]; key and
    value default to the query (self-attention), key_padding_mask [B, S] is True/nonzero at padding
    (a float mask is added to the scores), causal=True masks later keys."""

    def __init__(self, embed_dim, num_heads, causal=False, **kwargs):
        super().__init__(embed_dim, num_heads, batch_first=True, **kwargs)
        self.causal = causal

    def forward(self, query, key=None, value=None, key_padding_mask=None):
        q = query.transpose(0, 1)
        k = q if key is None else key.transpose(0, 1)
        v = k if value is None else value.transpose(0, 1)
        mask = None
        if key_padding_mask is not None and not key_padding_mask.is_floating_point():
            key_padding_mask = key_padding_mask.bool()
        if self.causal:
            mask = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool, device=q.device).triu(1)
            if key_padding_mask is not None and key_padding_mask.is_floating_point():
                mask = torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask, -math.inf)
        out = F.multi_head_attention_forward(
            q, k, v, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, self.out_proj.weight,
            self.out_proj.bias, training=self.training, key_padding_mask=key_padding_mask,
            need_weights=False, attn_mask=mask, is_causal=self.causal,
            use_separate_proj_weight=not self._qkv_same_embed_dim, q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight, v_proj_weight=self.v_proj_weight)[0]
        return out.transpose(0, 1)


class TransformerEncoderBlock(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer (batch_first) with an optional causal self-attention mask; the
    forward is torch's reference (non-fused) path, src_key_padding_mask [B, T] True at padding."""

    def __init__(self, d_model, nhead, causal=False, **kwargs):
        super().__init__(d_model, nhead, batch_first=True, **kwargs)
        self.causal = causal

    def _attend(self, x, key_padding_mask):
        attn = self.self_attn
        q = x.transpose(0, 1)
        mask = None
        if key_padding_mask is not None and not key_padding_mask.is_floating_point():
            key_padding_mask = key_padding_mask.bool()
        if self.causal:
            mask = torch.ones(q.shape[0], q.shape[0], dtype=torch.bool, device=q.device).triu(1)
            if key_padding_mask is not None and key_padding_mask.is_floating_point():
                mask = torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask, -math.inf)
        out = F.multi_head_attention_forward(
            q, q, q, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias,
            attn.bias_k, attn.bias_v, attn.add_zero_attn, attn.dropout, attn.out_proj.weight,
            attn.out_proj.bias, training=self.training, key_padding_mask=key_padding_mask,
            need_weights=False, attn_mask=mask, is_causal=self.causal)[0]
        return self.dropout1(out.transpose(0, 1))

    def forward(self, src, src_key_padding_mask=None):
        x = src
        if self.norm_first:
            x = x + self._attend(self.norm1(x), src_key_padding_mask)
            x = x + self._feed_forward(self.norm2(x))
        else:
            x = self.norm1(x + self._attend(x, src_key_padding_mask))
            x = self.norm2(x + self._feed_forward(x))
        return x

    def _feed_forward(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderBlock(nn.TransformerDecoderLayer):
    """nn.TransformerDecoderLayer (batch_first): self-attention over x (causal=True masks later
    positions), cross-attention to memory, feed-forward; padding masks are True at padding."""

    def __init__(self, d_model, nhead, causal=False, **kwargs):
        super().__init__(d_model, nhead, batch_first=True, **kwargs)
        self.causal = causal

    def _attend(self, attn, x, mem, key_padding_mask, causal):
        q = x.transpose(0, 1)
        kv = q if mem is None else mem.transpose(0, 1)
        mask = None
        if key_padding_mask is not None and not key_padding_mask.is_floating_point():
            key_padding_mask = key_padding_mask.bool()
        if causal:
            mask = torch.ones(q.shape[0], kv.shape[0], dtype=torch.bool, device=q.device).triu(1)
            if key_padding_mask is not None and key_padding_mask.is_floating_point():
                mask = torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask, -math.inf)
        out = F.multi_head_attention_forward(
            q, kv, kv, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias,
            attn.bias_k, attn.bias_v, attn.add_zero_attn, attn.dropout, attn.out_proj.weight,
            attn.out_proj.bias, training=self.training, key_padding_mask=key_padding_mask,
            need_weights=False, attn_mask=mask, is_causal=causal)[0]
        return out.transpose(0, 1)

    def forward(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None):
        x = tgt
        if self.norm_first:
            x = x + self.dropout1(self._attend(self.self_attn, self.norm1(x), None,
                                               tgt_key_padding_mask, self.causal))
            x = x + self.dropout2(self._attend(self.multihead_attn, self.norm2(x), memory,
                                               memory_key_padding_mask, False))
            x = x + self._feed_forward(self.norm3(x))
        else:
            x = self.norm1(x + self.dropout1(self._attend(self.self_attn, x, None,
                                                          tgt_key_padding_mask, self.causal)))
            x = self.norm2(x + self.dropout2(self._attend(self.multihead_attn, x, memory,
                                                          memory_key_padding_mask, False)))
            x = self.norm3(x + self._feed_forward(x))
        return x

    def _feed_forward(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))
