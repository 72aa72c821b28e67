"""Window attention: Swin's self-attention inside square windows of a channels-last image, with an
optional cyclic shift and a learned relative position bias, as one module with torchvision's
state_dict (the table is indexed by a fixed buffer, so both are part of the layer, not tensors a
spec computes)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator

from nnspec.layers.base import Layer, ShapeError, fmt_shape, py, register


def padded(size: int, window: int) -> int:
    """A map's size padded up to whole windows."""
    return size + (window - size % window) % window


@register
class ShiftedWindowAttention(Layer):
    """Swin's (shifted) window multi-head self-attention with a relative position bias on
    [H, W, C] (channels last), torchvision's ShiftedWindowAttention."""

    kind: ClassVar[str] = "shifted_window_attention"
    torch_name: ClassVar[str] = "torchvision.models.swin_transformer.ShiftedWindowAttention"
    category: ClassVar[str] = "attention"
    prelude: ClassVar[tuple[str, ...]] = ("ShiftedWindowAttention",)
    heads: PositiveInt = Field(description="attention heads; must divide C")
    window: PositiveInt = Field(description="side of the square windows; the map is padded to "
                                "whole windows")
    shift: NonNegativeInt = Field(default=0, description="cyclic shift of the map before it is "
                                  "cut into windows (Swin: window // 2 in every second block); "
                                  "none where the window covers the padded map")
    qkv_bias: bool = Field(default=True, description="learn a bias in the q/k/v projection")
    proj_bias: bool = Field(default=True, description="learn a bias in the output projection")
    attention_dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                                     description="dropout on the attention weights (training)")
    dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                           description="dropout on the output (training)")

    @field_validator("shift")
    @classmethod
    def _within_window(cls, shift: int, info: ValidationInfo) -> int:
        # a field validator, so the diagnostic points at `shift` (window is checked before it)
        window = info.data.get("window")
        if window is not None and shift >= window:
            raise ValueError(f"a shift must be smaller than the window ({window})")
        return shift

    def infer(self, ins):
        (x,) = ins
        if len(x.shape) != 3:
            raise ShapeError(f"shifted_window_attention expects a channels-last image [B, H, W, C],"
                             f" got {fmt_shape(x.shape)}", "permute([0, 2, 3, 1]) puts the "
                             "channels of [B, C, H, W] last")
        if x.shape[2] % self.heads:
            raise ShapeError(f"shifted_window_attention: the {x.shape[2]} channels of "
                             f"{fmt_shape(x.shape)} are not divisible by heads={self.heads}",
                             "each head gets C / heads features")
        return x

    def params(self, ins):
        c = ins[0].shape[2]
        p = {"qkv.weight": (3 * c, c)}
        if self.qkv_bias:
            p["qkv.bias"] = (3 * c,)
        p["proj.weight"] = (c, c)
        if self.proj_bias:
            p["proj.bias"] = (c,)
        p["relative_position_bias_table"] = ((2 * self.window - 1) ** 2, self.heads)
        return p

    def buffers(self, ins):
        return {"relative_position_index": (self.window ** 4,)}

    def flops(self, ins, outs):
        # two per multiply-add: the projections over every token of the padded map, q k^T and
        # attn v in each window
        h, w, c = ins[0].shape
        tokens = padded(h, self.window) * padded(w, self.window)
        return 2 * tokens * (4 * c * c + 2 * self.window ** 2 * c)

    def init_source(self, ins):
        rest = self.kwargs_source(["shift", "qkv_bias", "proj_bias", "attention_dropout",
                                   "dropout"])
        head = f"{py(ins[0].shape[2])}, {py(self.heads)}, {py(self.window)}"
        return f"ShiftedWindowAttention({head}{', ' + rest if rest else ''})"
