"""Window attention: Swin's self-attention inside the windows of a channels-last image, with an
optional cyclic shift and a learned relative position bias, as one module with torchvision's
state_dict (the table is indexed by a fixed buffer, so both are part of the layer, not tensors a
spec computes)."""
from __future__ import annotations

from typing import ClassVar, Union

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator

from nnspec.layers.base import Layer, ShapeError, fmt_shape, ntuple, py, register


def padded(size: int, window: int) -> int:
    """A map's size padded up to whole windows."""
    return size + (window - size % window) % window


@register
class ShiftedWindowAttention(Layer):
    """Swin's (shifted) window self-attention with a relative position bias, on [H, W, C]."""

    kind: ClassVar[str] = "shifted_window_attention"
    torch_name: ClassVar[str] = "torchvision.models.swin_transformer.ShiftedWindowAttention"
    category: ClassVar[str] = "attention"
    prelude: ClassVar[tuple[str, ...]] = ("ShiftedWindowAttention",)
    heads: PositiveInt = Field(description="attention heads; must divide C")
    window: Union[PositiveInt, tuple[PositiveInt, PositiveInt]] = Field(
        description="window size: one int, or (height, width); the map is padded to whole windows")
    shift: Union[NonNegativeInt, tuple[NonNegativeInt, NonNegativeInt]] = Field(
        default=0, description="cyclic shift of the map before it is cut into windows, one int "
        "or (rows, columns) (Swin: window // 2 in every second block); none along a side where "
        "the window covers the padded map")
    qkv_bias: bool = Field(default=True, description="learn a bias in the q/k/v projection")
    proj_bias: bool = Field(default=True, description="learn a bias in the output projection")
    attention_dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                                     description="dropout on the attention weights (training)")
    dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                           description="dropout on the output (training)")

    @field_validator("shift")
    @classmethod
    def _within_window(cls, shift, info: ValidationInfo):
        # a field validator, so the diagnostic points at `shift` (window is checked before it)
        window = info.data.get("window")
        if window is not None and any(s >= w for s, w in zip(ntuple(shift, 2), ntuple(window, 2))):
            raise ValueError(f"a shift must be smaller than the window ({py(window)})")
        return shift

    @property
    def sides(self) -> tuple[int, int]:
        """The window's (height, width)."""
        return ntuple(self.window, 2)  # type: ignore[return-value]

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
        wh, ww = self.sides
        p["relative_position_bias_table"] = ((2 * wh - 1) * (2 * ww - 1), self.heads)
        return p

    def buffers(self, ins):
        wh, ww = self.sides
        return {"relative_position_index": ((wh * ww) ** 2,)}

    def flops(self, ins, outs):
        # two per multiply-add: the projections over every token of the padded map, q k^T and
        # attn v in each window
        h, w, c = ins[0].shape
        wh, ww = self.sides
        tokens = padded(h, wh) * padded(w, ww)
        return 2 * tokens * (4 * c * c + 2 * wh * ww * c)

    def init_source(self, ins):
        rest = self.kwargs_source(["shift", "qkv_bias", "proj_bias", "attention_dropout",
                                   "dropout"])
        head = f"{py(ins[0].shape[2])}, {py(self.heads)}, {py(self.window)}"
        return f"ShiftedWindowAttention({head}{', ' + rest if rest else ''})"
