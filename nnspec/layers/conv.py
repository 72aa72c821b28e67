"""Convolutions: conv1d/2d/3d (groups, dilation), transposed, depthwise-separable."""
from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import Field, AliasChoices, NonNegativeInt, PositiveInt

from nnspec.layers.base import (
    Layer, ShapeError, T, check_lengths, conv_out, expect_rank, fmt_shape, ntuple, numel, py,
    register, variant
)

Size = Union[PositiveInt, tuple[PositiveInt, ...]]
Pad = Union[NonNegativeInt, tuple[NonNegativeInt, ...], Literal["same", "valid"]]


class _ConvNd(Layer):
    dims: ClassVar[int] = 2
    category: ClassVar[str] = "convolution"
    out_channels: PositiveInt = Field(description="number of output channels")
    kernel_size: Size = Field(validation_alias=AliasChoices("kernel_size", "kernel"),
                              description="kernel size, one int or one per spatial dim "
                              "(also accepted as `kernel`)")
    stride: Size = Field(1, description="step between windows (int or per dim)")
    padding: Pad = Field(0, description="zero padding per side (int, per dim, 'same' or 'valid')")
    dilation: Size = Field(1, description="spacing between kernel elements")
    groups: PositiveInt = Field(1, description="blocked connections; groups = in_channels makes "
                                "a depthwise convolution")
    bias: bool = Field(True, description="add a learned bias")
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="how padding is filled")

    def _check(self, x: T) -> None:
        expect_rank(x, self.dims + 1, self.kind)
        check_lengths(self, self.dims, ("kernel_size", "stride", "dilation", "padding"))
        cin = x.shape[0]
        if cin % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"{self.kind}: groups={self.groups} must divide in_channels={cin} "
                             f"and out_channels={self.out_channels}")
        if self.padding == "same" and any(s != 1 for s in ntuple(self.stride, self.dims)):
            raise ShapeError(f"{self.kind}: padding='same' needs stride 1")

    def _check_padding_mode(self, x: T, k: tuple[int, ...], d: tuple[int, ...]) -> None:
        """reflect and circular padding read the input's own values, so torch refuses a padding
        wider than the input (reflect: as wide, too) when the model runs; say so at check."""
        if self.padding_mode not in ("reflect", "circular") or self.padding == "valid":
            return
        if self.padding == "same":
            pads = tuple(d[i] * (k[i] - 1) - d[i] * (k[i] - 1) // 2 for i in range(self.dims))
        else:
            pads = ntuple(self.padding, self.dims)
        for i, pad in enumerate(pads):
            size = x.shape[1 + i]
            if pad > size or (self.padding_mode == "reflect" and pad >= size):
                raise ShapeError(f"{self.kind}: padding_mode={self.padding_mode!r} pads {pad} on a "
                                 f"side of {fmt_shape(x.shape)}, whose dim {i + 2} has only {size}",
                                 "reflect padding must be smaller than the input, circular at "
                                 "most as large; or use padding_mode='zeros' or 'replicate'")

    def _spatial(self, x: T) -> tuple[int, ...]:
        k, s, d = (ntuple(getattr(self, n), self.dims) for n in ("kernel_size", "stride", "dilation"))
        self._check_padding_mode(x, k, d)
        if self.padding == "same":
            return x.shape[1:]
        p = (0,) * self.dims if self.padding == "valid" else ntuple(self.padding, self.dims)
        out = tuple(conv_out(x.shape[1 + i], k[i], s[i], p[i], d[i]) for i in range(self.dims))
        if any(o <= 0 for o in out):
            raise ShapeError(f"{self.kind}: input {fmt_shape(x.shape)} is smaller than the kernel "
                             f"{k} (with padding {p}, dilation {d}): output would be {out}")
        return out

    def infer(self, ins):
        (x,) = ins
        self._check(x)
        return T((self.out_channels, *self._spatial(x)))

    def params(self, ins):
        k = ntuple(self.kernel_size, self.dims)
        p = {"weight": (self.out_channels, ins[0].shape[0] // self.groups, *k)}
        if self.bias:
            p["bias"] = (self.out_channels,)
        return p

    def flops(self, ins, outs):
        w = numel(self.params(ins)["weight"])
        return 2 * numel(outs[0].shape[1:]) * w

    def init_source(self, ins):
        rest = self.kwargs_source(["stride", "padding", "dilation", "groups", "bias", "padding_mode"])
        return (f"{self.torch_name}({py(ins[0].shape[0])}, {py(self.out_channels)}, "
                f"kernel_size={py(self.kernel_size)}{', ' + rest if rest else ''})")


Conv1d = variant(_ConvNd, "conv1d", "nn.Conv1d",
                 "1-d convolution over [C, L]; in_channels is inferred.", dims=1)
Conv2d = variant(_ConvNd, "conv2d", "nn.Conv2d", "2-d convolution over [C, H, W]; in_channels is "
                 "inferred. groups=C gives a depthwise conv.", dims=2)
Conv3d = variant(_ConvNd, "conv3d", "nn.Conv3d",
                 "3-d convolution over [C, D, H, W]; in_channels is inferred.", dims=3)


# ---- transposed and depthwise-separable convolutions ----------------------------------------
class _ConvTransposeNd(Layer):
    dims: ClassVar[int] = 2
    category: ClassVar[str] = "convolution"
    out_channels: PositiveInt = Field(description="number of output channels")
    kernel_size: Size = Field(validation_alias=AliasChoices("kernel_size", "kernel"),
                              description="kernel size: one int, or one per spatial dim")
    stride: Size = Field(default=1, description="upsampling stride (int or per dim)")
    padding: Union[NonNegativeInt, tuple[NonNegativeInt, ...]] = Field(
        default=0, description="size trimmed from each side of the output")
    output_padding: Union[NonNegativeInt, tuple[NonNegativeInt, ...]] = Field(
        default=0, description="extra size added to one side of the output (below stride or dilation)")
    groups: PositiveInt = Field(default=1, description="blocked connections from input to output channels")
    bias: bool = Field(default=True, description="add a learned bias")
    dilation: Size = Field(default=1, description="spacing between kernel elements")

    def _spatial(self, x: T) -> tuple[int, ...]:
        expect_rank(x, self.dims + 1, self.kind)
        check_lengths(self, self.dims,
                       ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        cin = x.shape[0]
        if cin % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"{self.kind}: groups={self.groups} must divide in_channels={cin} "
                             f"(input {fmt_shape(x.shape)}) and out_channels={self.out_channels}")
        k, s, p, op, d = (ntuple(getattr(self, n), self.dims) for n in
                          ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            raise ShapeError(f"{self.kind}: output_padding {op} must be smaller than stride {s} "
                             f"or dilation {d}")
        out = tuple((x.shape[1 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
                    for i in range(self.dims))
        if any(o <= 0 for o in out):
            raise ShapeError(f"{self.kind}: input {fmt_shape(x.shape)} with padding {p} gives an "
                             f"empty output {out}", "reduce padding")
        return out

    def infer(self, ins):
        (x,) = ins
        return T((self.out_channels, *self._spatial(x)))

    def params(self, ins):
        k = ntuple(self.kernel_size, self.dims)
        p = {"weight": (ins[0].shape[0], self.out_channels // self.groups, *k)}
        if self.bias:
            p["bias"] = (self.out_channels,)
        return p

    def flops(self, ins, outs):
        # flop_counter counts a transposed conv per *input* position: 2 * in_spatial * weight
        return 2 * numel(ins[0].shape[1:]) * numel(self.params(ins)["weight"])

    def init_source(self, ins):
        rest = self.kwargs_source(["stride", "padding", "output_padding", "groups", "bias", "dilation"])
        return (f"{self.torch_name}({py(ins[0].shape[0])}, {py(self.out_channels)}, "
                f"kernel_size={py(self.kernel_size)}{', ' + rest if rest else ''})")


ConvTranspose1d = variant(_ConvTransposeNd, "conv_transpose1d", "nn.ConvTranspose1d",
                          "1-d transposed convolution over [C, L] (learned upsampling); "
                          "in_channels is inferred.", dims=1)
ConvTranspose2d = variant(_ConvTransposeNd, "conv_transpose2d", "nn.ConvTranspose2d",
                          "2-d transposed convolution over [C, H, W] (learned upsampling); "
                          "in_channels is inferred.", dims=2)
ConvTranspose3d = variant(_ConvTransposeNd, "conv_transpose3d", "nn.ConvTranspose3d",
                          "3-d transposed convolution over [C, D, H, W]; in_channels is inferred.",
                          dims=3)


@register
class SeparableConv2d(Layer):
    """Depthwise-separable 2-d conv (MobileNet): a per-channel conv, then a 1x1 pointwise conv."""

    kind: ClassVar[str] = "separable_conv2d"
    torch_name: ClassVar[str] = "SeparableConv2d"
    category: ClassVar[str] = "convolution"
    prelude: ClassVar[tuple[str, ...]] = ("SeparableConv2d",)
    out_channels: PositiveInt = Field(description="output channels of the pointwise conv")
    kernel_size: Size = Field(validation_alias=AliasChoices("kernel_size", "kernel"),
                              description="depthwise kernel size: one int or (kh, kw)")
    stride: Size = Field(default=1, description="depthwise stride")
    padding: Pad = Field(default=0, description="depthwise padding: int, pair, 'same' or 'valid'")
    dilation: Size = Field(default=1, description="depthwise dilation")
    bias: bool = Field(default=True, description="learned bias on the pointwise conv (the "
                       "depthwise conv has none)")
    depth_multiplier: PositiveInt = Field(default=1, description="depthwise output channels per "
                                          "input channel")

    def _mid(self, ins) -> int:
        return ins[0].shape[0] * self.depth_multiplier

    def infer(self, ins):
        (x,) = ins
        expect_rank(x, 3, self.kind)
        check_lengths(self, 2, ("kernel_size", "stride", "padding", "dilation"))
        k, s, d = (ntuple(getattr(self, n), 2) for n in ("kernel_size", "stride", "dilation"))
        if self.padding == "same":
            if any(v != 1 for v in s):
                raise ShapeError(f"{self.kind}: padding='same' needs stride 1")
            return T((self.out_channels, *x.shape[1:]))
        p = (0, 0) if self.padding == "valid" else ntuple(self.padding, 2)
        out = tuple(conv_out(x.shape[1 + i], k[i], s[i], p[i], d[i]) for i in range(2))
        if any(o <= 0 for o in out):
            raise ShapeError(f"{self.kind}: input {fmt_shape(x.shape)} is smaller than the kernel "
                             f"{k} (with padding {p}, dilation {d}): output would be {out}")
        return T((self.out_channels, *out))

    def params(self, ins):
        k = ntuple(self.kernel_size, 2)
        mid = self._mid(ins)
        p = {"depthwise.weight": (mid, 1, *k), "pointwise.weight": (self.out_channels, mid, 1, 1)}
        if self.bias:
            p["pointwise.bias"] = (self.out_channels,)
        return p

    def flops(self, ins, outs):
        w = self.params(ins)
        return 2 * numel(outs[0].shape[1:]) * (numel(w["depthwise.weight"])
                                                + numel(w["pointwise.weight"]))

    def init_source(self, ins):
        rest = self.kwargs_source(["stride", "padding", "dilation", "bias", "depth_multiplier"])
        return (f"SeparableConv2d({py(ins[0].shape[0])}, {py(self.out_channels)}, "
                f"kernel_size={py(self.kernel_size)}{', ' + rest if rest else ''})")
