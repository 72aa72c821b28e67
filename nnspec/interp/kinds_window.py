"""Swin's shifted window attention from its definition, by coordinates instead of rolls and
reshapes: each position of the padded map belongs to the window that holds it after the shift,
tokens attend within their window, with a bias looked up by their row and column offsets and a
mask between the bands the shift brought together; results go back to the positions they came
from."""
from __future__ import annotations

import torch

from nnspec.interp.registry import kind


def _band(i: torch.Tensor, size: int, window: int, shift: int) -> torch.Tensor:
    # after a cyclic shift the last `window` rows of the shifted map hold two bands: rows that
    # were in place and rows that wrapped around from the top (torchvision's three slices)
    if shift == 0:
        return torch.zeros_like(i)
    return (i >= size - window).long() + (i >= size - shift).long()


@kind("shifted_window_attention")
def shifted_window_attention(layer, w, args, kwargs, ctx):
    x = args[0]
    b, h, wd, c = x.shape
    wh, ww = (layer.window,) * 2 if isinstance(layer.window, int) else layer.window
    shift = (layer.shift,) * 2 if isinstance(layer.shift, int) else layer.shift
    heads = layer.heads
    ph, pw = h + (wh - h % wh) % wh, wd + (ww - wd % ww) % ww
    sh = 0 if wh >= ph else shift[0]
    sw = 0 if ww >= pw else shift[1]
    full = x.new_zeros(b, ph, pw, c)
    full[:, :h, :wd] = x
    # shifted position (i, j) holds original (i + sh, j + sw); group shifted positions by window
    i, j = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing="ij")
    order = ((i // wh) * (pw // ww) + j // ww) * wh * ww + (i % wh) * ww + j % ww
    flat = torch.empty(ph * pw, dtype=torch.long)
    flat[order.flatten()] = torch.arange(ph * pw)
    si, sj = i.flatten()[flat].view(-1, wh * ww), j.flatten()[flat].view(-1, wh * ww)  # nW, N
    src_i, src_j = (si + sh) % ph, (sj + sw) % pw
    tokens = full[:, src_i, src_j]                                    # B, nW, N, C
    qkv = tokens @ w["qkv.weight"].T
    if "qkv.bias" in w:
        qkv = qkv + w["qkv.bias"]
    d = c // heads
    q, k, v = (qkv[..., n * c:(n + 1) * c].unflatten(-1, (heads, d)).transpose(2, 3)
               for n in range(3))                                     # B, nW, heads, N, d
    scores = (q @ k.transpose(-1, -2)) / d ** 0.5
    # the bias of token t for token s: the table row of their offset, per head
    row = (si[:, :, None] % wh - si[:, None, :] % wh + wh - 1) * (2 * ww - 1)
    col = sj[:, :, None] % ww - sj[:, None, :] % ww + ww - 1
    bias = w["relative_position_bias_table"][row + col]               # nW, N, N, heads
    scores = scores + bias.permute(0, 3, 1, 2)
    label = _band(si, ph, wh, sh) * 3 + _band(sj, pw, ww, sw)         # nW, N
    apart = label[:, :, None] != label[:, None, :]
    scores = scores + torch.where(apart, -100.0, 0.0).to(scores.dtype)[:, None]
    out = (scores.softmax(-1) @ v).transpose(2, 3).flatten(-2)        # B, nW, N, C
    out = out @ w["proj.weight"].T
    if "proj.bias" in w:
        out = out + w["proj.bias"]
    back = x.new_zeros(b, ph, pw, c)
    back[:, src_i, src_j] = out
    return back[:, :h, :wd]
