"""Normalization layers: batch, layer, group and instance norm."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from nnspec.layers.base import Layer, ShapeError, T, expect_rank, fmt_shape, py, register


class _BatchNorm(Layer):
    category: ClassVar[str] = "normalization"
    ranks: ClassVar[tuple[int, ...]] = (3,)
    eps: float = Field(1e-5, description="added to the variance for stability")
    momentum: float = Field(0.1, description="weight of the current batch in the running stats")
    affine: bool = Field(True, description="learn a per-channel scale and shift")
    track_running_stats: bool = Field(True, description="keep running mean/var for eval mode")

    def infer(self, ins):
        expect_rank(ins[0], self.ranks, self.kind)
        return ins[0]

    def params(self, ins):
        c = ins[0].shape[0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def buffers(self, ins):
        c = ins[0].shape[0]
        if not self.track_running_stats:
            return {}
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def init_source(self, ins):
        rest = self.kwargs_source(["eps", "momentum", "affine", "track_running_stats"])
        return f"{self.torch_name}({py(ins[0].shape[0])}{', ' + rest if rest else ''})"


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalization over [C] or [C, L]; num_features is inferred."""

    kind: ClassVar[str] = "batchnorm1d"
    torch_name: ClassVar[str] = "nn.BatchNorm1d"
    ranks: ClassVar[tuple[int, ...]] = (1, 2)


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalization over [C, H, W]; num_features is inferred."""

    kind: ClassVar[str] = "batchnorm2d"
    torch_name: ClassVar[str] = "nn.BatchNorm2d"
    ranks: ClassVar[tuple[int, ...]] = (3,)


@register
class BatchNorm3d(_BatchNorm):
    """Batch normalization over [C, D, H, W]; num_features is inferred."""

    kind: ClassVar[str] = "batchnorm3d"
    torch_name: ClassVar[str] = "nn.BatchNorm3d"
    ranks: ClassVar[tuple[int, ...]] = (4,)


@register
class LayerNorm(Layer):
    """Layer normalization over the last `dims` dims (default 1); their sizes are inferred."""

    kind: ClassVar[str] = "layernorm"
    torch_name: ClassVar[str] = "nn.LayerNorm"
    category: ClassVar[str] = "normalization"
    dims: int = Field(1, description="how many trailing dims to normalize over")
    eps: float = Field(1e-5, description="added to the variance for stability")
    elementwise_affine: bool = Field(True, description="learn a scale (and a shift)")
    bias: bool = Field(True, description="learn the shift as well as the scale")

    def _shape(self, x: T):
        if not 1 <= self.dims <= len(x.shape):
            raise ShapeError(f"layernorm over the last {self.dims} dims needs an input with that "
                             f"many, got {fmt_shape(x.shape)}")
        return x.shape[-self.dims:]

    def infer(self, ins):
        self._shape(ins[0])
        return ins[0]

    def params(self, ins):
        if not self.elementwise_affine:
            return {}
        shape = self._shape(ins[0])
        return {"weight": shape, "bias": shape} if self.bias else {"weight": shape}

    def init_source(self, ins):
        shape = self._shape(ins[0])
        rest = self.kwargs_source(["eps", "elementwise_affine", "bias"])
        return f"nn.LayerNorm({_normalized_shape(shape)}{', ' + rest if rest else ''})"


# ---- group, instance and RMS norm -----------------------------------------------------------
from typing import Optional  # noqa: E402

from pydantic import Field, PositiveInt  # noqa: E402


@register
class GroupNorm(Layer):
    """Group normalization over [C, ...]: channels split into num_groups; num_channels is inferred."""

    kind: ClassVar[str] = "groupnorm"
    torch_name: ClassVar[str] = "nn.GroupNorm"
    category: ClassVar[str] = "normalization"
    num_groups: PositiveInt = Field(description="number of channel groups; must divide the channels")
    eps: float = Field(default=1e-5, description="added to the variance for stability")
    affine: bool = Field(default=True, description="learn a per-channel scale and shift")

    def infer(self, ins):
        (x,) = ins
        if not x.shape:
            raise ShapeError(f"groupnorm expects an input with channels [C, ...], got "
                             f"{fmt_shape(x.shape)}")
        if x.shape[0] % self.num_groups:
            raise ShapeError(f"groupnorm: num_groups={self.num_groups} does not divide the "
                             f"{x.shape[0]} channels of {fmt_shape(x.shape)}",
                             "pick num_groups that divides the channel count")
        return x

    def params(self, ins):
        c = ins[0].shape[0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def init_source(self, ins):
        rest = self.kwargs_source(["eps", "affine"])
        return f"nn.GroupNorm({py(self.num_groups)}, {py(ins[0].shape[0])}{', ' + rest if rest else ''})"


class _InstanceNorm(_BatchNorm):
    """Batch norm's rules; torch's defaults differ (no affine, no running stats)."""

    affine: bool = Field(default=False, description="learn a per-channel scale and shift")
    track_running_stats: bool = Field(default=False, description="keep running mean/var and use "
                                      "them in eval")

    def infer(self, ins):
        x = super().infer(ins)
        # statistics over one element per channel are undefined: torch raises in training (and
        # always without running stats), so a spec that checks would fail when it runs
        spatial = 1
        for s in x.shape[1:]:
            spatial *= s
        if spatial == 1:
            raise ShapeError(f"{self.kind} normalizes each channel over its spatial elements, but "
                             f"{fmt_shape(x.shape)} has only one per channel",
                             "instance statistics need at least 2 spatial elements; use batchnorm "
                             "or layernorm for such inputs")
        return x


@register
class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over [C, L], per sample and channel; num_features is inferred."""

    kind: ClassVar[str] = "instancenorm1d"
    torch_name: ClassVar[str] = "nn.InstanceNorm1d"
    ranks: ClassVar[tuple[int, ...]] = (2,)


@register
class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over [C, H, W], per sample and channel; num_features is inferred."""

    kind: ClassVar[str] = "instancenorm2d"
    torch_name: ClassVar[str] = "nn.InstanceNorm2d"
    ranks: ClassVar[tuple[int, ...]] = (3,)


@register
class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over [C, D, H, W], per sample and channel; num_features is inferred."""

    kind: ClassVar[str] = "instancenorm3d"
    torch_name: ClassVar[str] = "nn.InstanceNorm3d"
    ranks: ClassVar[tuple[int, ...]] = (4,)


@register
class RMSNorm(Layer):
    """Root-mean-square normalization over the last `dims` dims (default 1); sizes are inferred."""

    kind: ClassVar[str] = "rmsnorm"
    torch_name: ClassVar[str] = "nn.RMSNorm"
    category: ClassVar[str] = "normalization"
    dims: PositiveInt = Field(default=1, description="how many trailing dims to normalize over")
    eps: Optional[float] = Field(default=None, description="added to the mean square (None: the "
                                 "dtype's machine epsilon)")
    elementwise_affine: bool = Field(default=True, description="learn a per-element scale")

    def _shape(self, x: T):
        if self.dims > len(x.shape):
            raise ShapeError(f"rmsnorm over the last {self.dims} dims needs an input with that "
                             f"many, got {fmt_shape(x.shape)}")
        return x.shape[-self.dims:]

    def infer(self, ins):
        self._shape(ins[0])
        return ins[0]

    def params(self, ins):
        return {"weight": self._shape(ins[0])} if self.elementwise_affine else {}

    def init_source(self, ins):
        shape = self._shape(ins[0])
        rest = self.kwargs_source(["eps", "elementwise_affine"])
        return f"nn.RMSNorm({_normalized_shape(shape)}{', ' + rest if rest else ''})"


def _normalized_shape(shape) -> str:
    """torch's normalized_shape: one int, or a list of them (as torchvision writes it)."""
    if len(shape) == 1:
        return py(shape[0])
    return "[" + ", ".join(py(s) for s in shape) + "]"
