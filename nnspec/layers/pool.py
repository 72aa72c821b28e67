"""Pooling: max/avg pooling with a window, adaptive pooling to a fixed size, global pooling."""
from __future__ import annotations

from typing import ClassVar, Optional, Union

from pydantic import AliasChoices, Field, NonNegativeInt, PositiveInt

from nnspec.layers.base import (Layer, ShapeError, T, check_lengths, expect_rank, fmt_shape, ntuple,
                                py, variant)

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
    # torch's avg_pool3d (alone among the pools) refuses an input smaller than the window even
    # when the padding would make room
    window_fits_input: ClassVar[bool] = False
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
        check_lengths(self, self.dims, ("kernel_size", "stride", "padding", "dilation"))
        k = ntuple(self.kernel_size, self.dims)
        s = k if self.stride is None else ntuple(self.stride, self.dims)
        p = ntuple(self.padding, self.dims)
        d = self._dilation()
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"{self.kind}: padding {p} must be at most half the kernel size {k}")
        if self.window_fits_input and any(x.shape[1 + i] < k[i] for i in range(self.dims)):
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


MaxPool1d = variant(_MaxPool, "maxpool1d", "nn.MaxPool1d", "Max over sliding windows of [C, L].",
                    functional="F.max_pool1d", dims=1)
MaxPool2d = variant(_MaxPool, "maxpool2d", "nn.MaxPool2d", "Max over sliding windows of [C, H, W].",
                    functional="F.max_pool2d", dims=2)
MaxPool3d = variant(_MaxPool, "maxpool3d", "nn.MaxPool3d",
                    "Max over sliding windows of [C, D, H, W].", functional="F.max_pool3d", dims=3)
AvgPool1d = variant(_AvgPool, "avgpool1d", "nn.AvgPool1d", "Mean over sliding windows of [C, L].",
                    functional="F.avg_pool1d", dims=1)
AvgPool2d = variant(_AvgPool, "avgpool2d", "nn.AvgPool2d", "Mean over sliding windows of [C, H, W].",
                    functional="F.avg_pool2d", dims=2)
AvgPool3d = variant(_AvgPool, "avgpool3d", "nn.AvgPool3d",
                    "Mean over sliding windows of [C, D, H, W].", functional="F.avg_pool3d", dims=3,
                    window_fits_input=True)


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


AdaptiveAvgPool1d = variant(_AdaptivePool, "adaptive_avgpool1d", "nn.AdaptiveAvgPool1d",
                            "Average-pool [C, L] to a fixed length output_size.",
                            functional="F.adaptive_avg_pool1d", dims=1)
AdaptiveAvgPool2d = variant(_AdaptivePool, "adaptive_avgpool2d", "nn.AdaptiveAvgPool2d",
                            "Average-pool [C, H, W] to a fixed output_size (1 = global).",
                            functional="F.adaptive_avg_pool2d", dims=2)
AdaptiveAvgPool3d = variant(_AdaptivePool, "adaptive_avgpool3d", "nn.AdaptiveAvgPool3d",
                            "Average-pool [C, D, H, W] to a fixed output_size.",
                            functional="F.adaptive_avg_pool3d", dims=3)
AdaptiveMaxPool1d = variant(_AdaptivePool, "adaptive_maxpool1d", "nn.AdaptiveMaxPool1d",
                            "Max-pool [C, L] to a fixed length output_size.",
                            functional="F.adaptive_max_pool1d", dims=1)
AdaptiveMaxPool2d = variant(_AdaptivePool, "adaptive_maxpool2d", "nn.AdaptiveMaxPool2d",
                            "Max-pool [C, H, W] to a fixed output_size.",
                            functional="F.adaptive_max_pool2d", dims=2)
AdaptiveMaxPool3d = variant(_AdaptivePool, "adaptive_maxpool3d", "nn.AdaptiveMaxPool3d",
                            "Max-pool [C, D, H, W] to a fixed output_size.",
                            functional="F.adaptive_max_pool3d", dims=3)


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


GlobalAvgPool = variant(_GlobalPool, "global_avgpool", "GlobalAvgPool",
                        "Mean over all spatial dims: [C, *spatial] -> [C] (adaptive average to 1, "
                        "then flatten).", prelude=("GlobalAvgPool",), reduce="torch.mean")
GlobalMaxPool = variant(_GlobalPool, "global_maxpool", "GlobalMaxPool",
                        "Max over all spatial dims: [C, *spatial] -> [C] (adaptive max to 1, then "
                        "flatten).", prelude=("GlobalMaxPool",), reduce="torch.amax")
