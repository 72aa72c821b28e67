"""Window attention helpers: Swin's (shifted) window attention with a relative position bias."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ShiftedWindowAttention(nn.Module):
    """Swin's window attention on [B, H, W, C], as torchvision's ShiftedWindowAttention (same
    state_dict: qkv, proj, relative_position_bias_table and the relative_position_index buffer):
    the map is padded to whole windows, rolled by -shift, cut into windows whose tokens
    attend among themselves with a learned bias per relative offset and head, and put back. Where
    the roll brought far regions together a mask of -100 keeps them apart; a window as large as
    the padded map is not shifted."""

    def __init__(self, dim, heads, window, shift=0, qkv_bias=True, proj_bias=True,
                 attention_dropout=0.0, dropout=0.0):
        super().__init__()
        # window and shift: one int for both sides, or (height, width)
        self.window = [window] * 2 if isinstance(window, int) else list(window)
        self.shift = [shift] * 2 if isinstance(shift, int) else list(shift)
        self.heads, self.attention_dropout, self.dropout = heads, attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        wh, ww = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1),
                                                                     heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        grid = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        coords = torch.stack(grid).flatten(1)                               # 2, N
        offsets = coords[:, :, None] - coords[:, None, :]                   # 2, N, N
        index = ((offsets[0] + wh - 1) * (2 * ww - 1) + offsets[1] + ww - 1).flatten()
        self.register_buffer("relative_position_index", index)

    def _mask(self, x, ph, pw, shifts):
        # torchvision's regions: 3 bands per shifted dim; tokens of different regions never meet
        wh, ww = self.window
        regions = x.new_zeros((ph, pw))
        count = 0
        for h in ((0, -wh), (-wh, -shifts[0]), (-shifts[0], None)):
            for w in ((0, -ww), (-ww, -shifts[1]), (-shifts[1], None)):
                regions[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        regions = regions.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        differ = regions.unsqueeze(1) - regions.unsqueeze(2)
        return differ.masked_fill(differ != 0, -100.0).masked_fill(differ == 0, 0.0)

    def forward(self, x):
        b, h, w, c = x.shape                                                # (B, H, W, C)
        (wh, ww), heads = self.window, self.heads
        n = wh * ww
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        ph, pw = x.shape[1], x.shape[2]
        shifts = [0 if wh >= ph else self.shift[0], 0 if ww >= pw else self.shift[1]]
        if sum(shifts) > 0:
            x = torch.roll(x, shifts=(-shifts[0], -shifts[1]), dims=(1, 2))
        windows = (ph // wh) * (pw // ww)
        x = x.view(b, ph // wh, wh, pw // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b * windows, n, c)                                    # (B*nW, N, C)
        qkv = self.qkv(x).reshape(b * windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                    # (B*nW, h, N, d)
        attn = (q * (c // heads) ** -0.5).matmul(k.transpose(-2, -1))
        bias = self.relative_position_bias_table[self.relative_position_index]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if sum(shifts) > 0:
            attn = attn.view(b, windows, heads, n, n)
            attn = attn + self._mask(x, ph, pw, shifts).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(b * windows, n, c)
        x = F.dropout(self.proj(x), p=self.dropout, training=self.training)
        x = x.view(b, ph // wh, pw // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if sum(shifts) > 0:
            x = torch.roll(x, shifts=(shifts[0], shifts[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()                                 # (B, H, W, C)
