"""Vision helpers: depthwise-separable convolution, stochastic depth, global pooling."""
from __future__ import annotations

import torch
import torch.nn as nn


class SeparableConv2d(nn.Module):
    """MobileNet's depthwise-separable conv: a depthwise conv (groups=in_channels, no bias) then a
    1x1 pointwise conv."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, depth_multiplier=1):
        super().__init__()
        mid = in_channels * depth_multiplier
        self.depthwise = nn.Conv2d(in_channels, mid, kernel_size, stride=stride, padding=padding,
                                   dilation=dilation, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class StochasticDepth(nn.Module):
    """Randomly drops whole residual branches while training (torchvision.ops.StochasticDepth):
    mode 'row' drops per sample, 'batch' drops for the whole batch; identity in eval."""

    def __init__(self, p, mode="row"):
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        if self.mode == "row":
            size = [x.shape[0]] + [1] * (x.ndim - 1)
        else:
            size = [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        return x * noise

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"


class GlobalAvgPool(nn.Module):
    """Mean over every spatial dim: [B, C, *spatial] -> [B, C]."""

    def forward(self, x):
        return torch.mean(x, dim=tuple(range(2, x.ndim)))


class GlobalMaxPool(nn.Module):
    """Max over every spatial dim: [B, C, *spatial] -> [B, C]."""

    def forward(self, x):
        return torch.amax(x, dim=tuple(range(2, x.ndim)))
