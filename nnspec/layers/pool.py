"""Pooling: max/avg pooling with a window, adaptive pooling to a fixed size, global pooling."""
from __future__ import annotations

from typing import ClassVar, Optional, Union

from pydantic import AliasChoices, Field, NonNegativeInt, PositiveInt

from nnspec.layers.base import Layer, ShapeError, T, expect_rank, fmt_shape, ntuple, py, register

Size = Union[PositiveInt, tuple[PositiveInt, ...]]
Pad = Union[NonNegativeInt, tuple[NonNegativeInt, ...]]
OutSize = Union[PositiveInt, tuple[Optional[PositiveInt], ...]]


def pool_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    """Output length of a pooling window, as ATen's pooling_output_shape computes it."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil else 0)
    out = span // stride + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input (or its left padding)
    return out


class _Pool(Layer):
    dims: ClassVar[int] = 2
    category: ClassVar[str] = "pooling"
    functional: ClassVar[str] = ""
    kernel_size: Size = Field(validation_alias=AliasChoices("kernel_size", "kernel"),
                              description="window size: one int, or one per spatial dim")
    stride: Optional[Size] = Field(default=None, description="window step (default: kernel_size)")
    padding: Pad = Field(default=0, description="implicit padding on both sides, at most half "
                         "the kernel")

    def _dilation(self) -> tuple[int, ...]:
        return (1,) * self.dims

    def infer(self, ins):
        (x,) = ins
        expect_rank(x, self.dims + 1, self.kind)
        for name in ("kernel_size", "stride", "padding", "dilation"):
            v = getattr(self, name, None)
            if isinstance(v, tuple) and len(v) != self.dims:
                raise ShapeError(f"{self.kind}: {name} has {len(v)} values, expected {self.dims}")
        k = ntuple(self.kernel_size, self.dims)
        s = k if self.stride is None else ntuple(self.stride, self.dims)
        p = ntuple(self.padding, self.dims)
        d = self._dilation()
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"{self.kind}: padding {p} must be at most half the kernel size {k}")
        if self.kind == "avgpool3d" and any(x.shape[1 + i] < k[i] for i in range(self.dims)):
            # torch's avg_pool3d (alone among the pools) refuses an input smaller than the window
            # even when the padding would make room
            raise ShapeError(f"{self.kind}: input {fmt_shape(x.shape)} is smaller than the window "
                             f"{k} (torch's avg_pool3d does not count the padding here)",
                             "use a smaller kernel_size, or pad the input first")
        ceil = self.ceil_mode  # type: ignore[attr-defined]
        out = tuple(pool_out(x.shape[1 + i], k[i], s[i], p[i], d[i], ceil) for i in range(self.dims))
        if any(o <= 0 for o in out):
            raise ShapeError(f"{self.kind}: input {fmt_shape(x.shape)} is smaller than the window "
                             f"{k} (with padding {p}): output would be {out}")
        return T((x.shape[0], *out))

    def _ctor_args(self) -> list[str]:
        return [n for n in type(self).model_fields if n != "kernel_size"]

    def init_source(self, ins):
        rest = self.kwargs_source(self._ctor_args())
        return f"{self.torch_name}({py(self.kernel_size)}{', ' + rest if rest else ''})"

    def functional_source(self, args, ins):
        rest = self.kwargs_source(self._ctor_args())
        return f"{self.functional}({args[0]}, {py(self.kernel_size)}{', ' + rest if rest else ''})"


class _MaxPool(_Pool):
    dilation: Size = Field(default=1, description="spacing between window elements")
    ceil_mode: bool = Field(default=False, description="round the output size up, not down")

    def _dilation(self):
        return ntuple(self.dilation, self.dims)


class _AvgPool(_Pool):
    ceil_mode: bool = Field(default=False, description="round the output size up, not down")
    count_include_pad: bool = Field(default=True, description="count padding zeros in the average")


@register
class MaxPool1d(_MaxPool):
    """Max over sliding windows of [C, L]."""

    kind: ClassVar[str] = "maxpool1d"
    torch_name: ClassVar[str] = "nn.MaxPool1d"
    functional: ClassVar[str] = "F.max_pool1d"
    dims: ClassVar[int] = 1


@register
class MaxPool2d(_MaxPool):
    """Max over sliding windows of [C, H, W]."""

    kind: ClassVar[str] = "maxpool2d"
    torch_name: ClassVar[str] = "nn.MaxPool2d"
    functional: ClassVar[str] = "F.max_pool2d"
    dims: ClassVar[int] = 2


@register
class MaxPool3d(_MaxPool):
    """Max over sliding windows of [C, D, H, W]."""

    kind: ClassVar[str] = "maxpool3d"
    torch_name: ClassVar[str] = "nn.MaxPool3d"
    functional: ClassVar[str] = "F.max_pool3d"
    dims: ClassVar[int] = 3


@register
class AvgPool1d(_AvgPool):
    """Mean over sliding windows of [C, L]."""

    kind: ClassVar[str] = "avgpool1d"
    torch_name: ClassVar[str] = "nn.AvgPool1d"
    functional: ClassVar[str] = "F.avg_pool1d"
    dims: ClassVar[int] = 1


@register
class AvgPool2d(_AvgPool):
    """Mean over sliding windows of [C, H, W]."""

    kind: ClassVar[str] = "avgpool2d"
    torch_name: ClassVar[str] = "nn.AvgPool2d"
    functional: ClassVar[str] = "F.avg_pool2d"
    dims: ClassVar[int] = 2


@register
class AvgPool3d(_AvgPool):
    """Mean over sliding windows of [C, D, H, W]."""

    kind: ClassVar[str] = "avgpool3d"
    torch_name: ClassVar[str] = "nn.AvgPool3d"
    functional: ClassVar[str] = "F.avg_pool3d"
    dims: ClassVar[int] = 3


# ---- adaptive pooling -------------------------------------------------------------------------
class _AdaptivePool(Layer):
    dims: ClassVar[int] = 2
    category: ClassVar[str] = "pooling"
    functional: ClassVar[str] = ""
    output_size: OutSize = Field(description="output size: one int, or one per spatial dim "
                                 "(None keeps that dim)")

    def infer(self, ins):
        (x,) = ins
        expect_rank(x, self.dims + 1, self.kind)
        if isinstance(self.output_size, int):
            out = (self.output_size,) * self.dims
        else:
            if len(self.output_size) != self.dims:
                raise ShapeError(f"{self.kind}: output_size has {len(self.output_size)} values, "
                                 f"expected {self.dims}")
            out = tuple(x.shape[1 + i] if o is None else o for i, o in enumerate(self.output_size))
        return T((x.shape[0], *out))

    def init_source(self, ins):
        return f"{self.torch_name}({py(self.output_size)})"

    def functional_source(self, args, ins):
        return f"{self.functional}({args[0]}, {py(self.output_size)})"


def _adaptive(kind: str, torch_name: str, functional: str, dims: int, doc: str):
    cls = type(torch_name.split(".")[-1], (_AdaptivePool,), {
        "__doc__": doc, "__module__": __name__,
        "__annotations__": {"kind": ClassVar[str], "torch_name": ClassVar[str],
                            "functional": ClassVar[str], "dims": ClassVar[int]},
        "kind": kind, "torch_name": torch_name, "functional": functional, "dims": dims})
    return register(cls)


AdaptiveAvgPool1d = _adaptive("adaptive_avgpool1d", "nn.AdaptiveAvgPool1d", "F.adaptive_avg_pool1d",
                              1, "Average-pool [C, L] to a fixed length output_size.")
AdaptiveAvgPool2d = _adaptive("adaptive_avgpool2d", "nn.AdaptiveAvgPool2d", "F.adaptive_avg_pool2d",
                              2, "Average-pool [C, H, W] to a fixed output_size (1 = global).")
AdaptiveAvgPool3d = _adaptive("adaptive_avgpool3d", "nn.AdaptiveAvgPool3d", "F.adaptive_avg_pool3d",
                              3, "Average-pool [C, D, H, W] to a fixed output_size.")
AdaptiveMaxPool1d = _adaptive("adaptive_maxpool1d", "nn.AdaptiveMaxPool1d", "F.adaptive_max_pool1d",
                              1, "Max-pool [C, L] to a fixed length output_size.")
AdaptiveMaxPool2d = _adaptive("adaptive_maxpool2d", "nn.AdaptiveMaxPool2d", "F.adaptive_max_pool2d",
                              2, "Max-pool [C, H, W] to a fixed output_size.")
AdaptiveMaxPool3d = _adaptive("adaptive_maxpool3d", "nn.AdaptiveMaxPool3d", "F.adaptive_max_pool3d",
                              3, "Max-pool [C, D, H, W] to a fixed output_size.")


# ---- global pooling ---------------------------------------------------------------------------
class _GlobalPool(Layer):
    category: ClassVar[str] = "pooling"
    reduce: ClassVar[str] = "torch.mean"

    def infer(self, ins):
        (x,) = ins
        if len(x.shape) < 2:
            raise ShapeError(f"{self.kind} expects [C, *spatial] with at least one spatial dim, "
                             f"got {fmt_shape(x.shape)}")
        return T((x.shape[0],))

    def init_source(self, ins):
        return f"{self.torch_name}()"

    def functional_source(self, args, ins):
        dims = tuple(range(2, len(ins[0].shape) + 1))
        return f"{self.reduce}({args[0]}, dim={py(dims)})"


@register
class GlobalAvgPool(_GlobalPool):
    """Mean over all spatial dims: [C, *spatial] -> [C] (adaptive average to 1, then flatten)."""

    kind: ClassVar[str] = "global_avgpool"
    torch_name: ClassVar[str] = "GlobalAvgPool"
    prelude: ClassVar[tuple[str, ...]] = ("GlobalAvgPool",)
    reduce: ClassVar[str] = "torch.mean"


@register
class GlobalMaxPool(_GlobalPool):
    """Max over all spatial dims: [C, *spatial] -> [C] (adaptive max to 1, then flatten)."""

    kind: ClassVar[str] = "global_maxpool"
    torch_name: ClassVar[str] = "GlobalMaxPool"
    prelude: ClassVar[tuple[str, ...]] = ("GlobalMaxPool",)
    reduce: ClassVar[str] = "torch.amax"
