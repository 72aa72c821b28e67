"""Normalization helpers: ConvNeXt's channels-first layer norm."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of [B, C, H, W], as torchvision's ConvNeXt LayerNorm2d: the
    channels go last, nn.LayerNorm(C) normalizes them, and they come back."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
