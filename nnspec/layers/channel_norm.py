"""Channels-first layer normalization: ConvNeXt's LayerNorm2d, which normalizes each pixel of
[C, H, W] over its C channels (layernorm normalizes trailing dims, which for an image would mix
pixels)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from nnspec.layers.base import Layer, expect_rank, py, register


@register
class LayerNorm2d(Layer):
    """Layer normalization over the channels of [C, H, W] (torchvision's ConvNeXt LayerNorm2d)."""

    # the module is the runtime helper LayerNorm2d, an nn.LayerNorm(C) that permutes the
    # channels last and back, so its state_dict (weight, bias of shape [C]) is torchvision's

    kind: ClassVar[str] = "layernorm2d"
    torch_name: ClassVar[str] = "torchvision.models.convnext.LayerNorm2d"
    category: ClassVar[str] = "normalization"
    prelude: ClassVar[tuple[str, ...]] = ("LayerNorm2d",)
    eps: float = Field(1e-5, description="added to the variance for stability (ConvNeXt: 1e-6)")
    elementwise_affine: bool = Field(True, description="learn a per-channel scale (and shift)")
    bias: bool = Field(True, description="learn the shift as well as the scale")

    def infer(self, ins):
        expect_rank(ins[0], 3, self.kind)
        return ins[0]

    def params(self, ins):
        if not self.elementwise_affine:
            return {}
        c = (ins[0].shape[0],)
        return {"weight": c, "bias": c} if self.bias else {"weight": c}

    def init_source(self, ins):
        rest = self.kwargs_source(["eps", "elementwise_affine", "bias"])
        return f"LayerNorm2d({py(ins[0].shape[0])}{', ' + rest if rest else ''})"
