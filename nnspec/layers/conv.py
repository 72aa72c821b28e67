"""Convolutions: conv1d/2d/3d (groups, dilation), transposed, depthwise-separable."""
from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import Field, AliasChoices, NonNegativeInt, PositiveInt

from .base import Layer, ShapeError, T, conv_out, expect_rank, fmt_shape, ntuple, numel, py, register

Size = Union[PositiveInt, tuple[PositiveInt, ...]]
Pad = Union[NonNegativeInt, tuple[NonNegativeInt, ...], Literal["same", "valid"]]


class _ConvNd(Layer):
    dims: ClassVar[int] = 2
    category: ClassVar[str] = "convolution"
    out_channels: PositiveInt
    kernel_size: Size = Field(validation_alias=AliasChoices("kernel_size", "kernel"))
    stride: Size = 1
    padding: Pad = 0
    dilation: Size = 1
    groups: PositiveInt = 1
    bias: bool = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"

    def _check(self, x: T) -> None:
        expect_rank(x, self.dims + 1, self.kind)
        for name in ("kernel_size", "stride", "dilation"):
            v = getattr(self, name)
            if isinstance(v, tuple) and len(v) != self.dims:
                raise ShapeError(f"{self.kind}: {name} has {len(v)} values, expected {self.dims}")
        cin = x.shape[0]
        if cin % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"{self.kind}: groups={self.groups} must divide in_channels={cin} "
                             f"and out_channels={self.out_channels}")
        if self.padding == "same" and any(s != 1 for s in ntuple(self.stride, self.dims)):
            raise ShapeError(f"{self.kind}: padding='same' needs stride 1")

    def _spatial(self, x: T) -> tuple[int, ...]:
        k, s, d = (ntuple(getattr(self, n), self.dims) for n in ("kernel_size", "stride", "dilation"))
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
        return (f"{self.torch_name}({ins[0].shape[0]}, {self.out_channels}, "
                f"kernel_size={py(self.kernel_size)}{', ' + rest if rest else ''})")


@register
class Conv1d(_ConvNd):
    """1-d convolution over [C, L]; in_channels is inferred."""

    kind: ClassVar[str] = "conv1d"
    torch_name: ClassVar[str] = "nn.Conv1d"
    dims: ClassVar[int] = 1


@register
class Conv2d(_ConvNd):
    """2-d convolution over [C, H, W]; in_channels is inferred. groups=C gives a depthwise conv."""

    kind: ClassVar[str] = "conv2d"
    torch_name: ClassVar[str] = "nn.Conv2d"
    dims: ClassVar[int] = 2


@register
class Conv3d(_ConvNd):
    """3-d convolution over [C, D, H, W]; in_channels is inferred."""

    kind: ClassVar[str] = "conv3d"
    torch_name: ClassVar[str] = "nn.Conv3d"
    dims: ClassVar[int] = 3
