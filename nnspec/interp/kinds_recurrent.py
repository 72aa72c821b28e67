"""Recurrent layers step by step, from torch.nn.RNN/LSTM/GRU's equations (batch first; gate
order i, f, g, o for LSTM and r, z, n for GRU; zero initial states; the reverse direction reads
the sequence backwards and its outputs are put back in time order)."""
from __future__ import annotations

import torch

from nnspec.interp.registry import kind


def _affine(x, w, name, sfx, layer_index):
    y = torch.matmul(x, w[f"weight_{name}_l{layer_index}{sfx}"].t())
    bias = w.get(f"bias_{name}_l{layer_index}{sfx}")
    return y if bias is None else y + bias


def _rnn_cell(layer, w, sfx, li, x, state):
    h = state
    pre = _affine(x, w, "ih", sfx, li) + _affine(h, w, "hh", sfx, li)
    h = torch.tanh(pre) if layer.nonlinearity == "tanh" else torch.clamp(pre, min=0.0)
    return h, h


def _lstm_cell(layer, w, sfx, li, x, state):
    h, c = state
    gates = _affine(x, w, "ih", sfx, li) + _affine(h, w, "hh", sfx, li)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def _gru_cell(layer, w, sfx, li, x, state):
    h = state
    xr, xz, xn = _affine(x, w, "ih", sfx, li).chunk(3, dim=-1)
    hr, hz, hn = _affine(h, w, "hh", sfx, li).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h = (1 - z) * n + z * h
    return h, h


_CELLS = {"rnn": _rnn_cell, "lstm": _lstm_cell, "gru": _gru_cell}


@kind("rnn", "lstm", "gru")
def recurrent(layer, w, args, kwargs, ctx):
    x = args[0]
    cell = _CELLS[layer.kind]
    steps = x.shape[1]
    for li in range(layer.num_layers):
        outs = []
        for sfx in ("", "_reverse")[: 2 if layer.bidirectional else 1]:
            zero = x.new_zeros(x.shape[0], layer.hidden_size)
            state = (zero, zero) if layer.kind == "lstm" else zero
            order = range(steps) if not sfx else reversed(range(steps))
            seq = [None] * steps
            for t in order:
                seq[t], state = cell(layer, w, sfx, li, x[:, t], state)
            outs.append(torch.stack(seq, dim=1))
        x = torch.cat(outs, dim=-1)  # dropout between layers is off in eval
    return x[:, -1] if layer.last else x
