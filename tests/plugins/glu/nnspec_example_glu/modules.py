"""The PyTorch module behind `gated_linear`; generated model.py imports this file."""
import torch
import torch.nn as nn


class GatedLinear(nn.Module):
    """A gated linear unit (Dauphin et al., 2017): one half of a projection gates the other."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(in_features, 2 * out_features, bias=bias)

    def forward(self, x):
        a, b = self.proj(x).chunk(2, dim=-1)
        return a * torch.sigmoid(b)
