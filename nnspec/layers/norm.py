"""Normalization layers: batch, instance, group, layer and RMS norm."""
from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, T, expect_rank, fmt_shape, py, register, variant


def _channel_affine(ins: list[T], affine: bool) -> dict[str, tuple[int, ...]]:
    """A per-channel scale and shift, as batch, instance and group norm learn them."""
    c = ins[0].shape[0]
    return {"weight": (c,), "bias": (c,)} if affine else {}


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
        return _channel_affine(ins, self.affine)

    def buffers(self, ins):
        c = ins[0].shape[0]
        if not self.track_running_stats:
            return {}
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def init_source(self, ins):
        rest = self.kwargs_source(["eps", "momentum", "affine", "track_running_stats"])
        return f"{self.torch_name}({py(ins[0].shape[0])}{', ' + rest if rest else ''})"


BatchNorm1d = variant(_BatchNorm, "batchnorm1d", "nn.BatchNorm1d",
                      "Batch normalization over [C] or [C, L]; num_features is inferred.",
                      ranks=(1, 2))
BatchNorm2d = variant(_BatchNorm, "batchnorm2d", "nn.BatchNorm2d",
                      "Batch normalization over [C, H, W]; num_features is inferred.", ranks=(3,))
BatchNorm3d = variant(_BatchNorm, "batchnorm3d", "nn.BatchNorm3d",
                      "Batch normalization over [C, D, H, W]; num_features is inferred.",
                      ranks=(4,))


class _TrailingNorm(Layer):
    """Normalization over the last `dims` dims, whose sizes are the normalized_shape."""

    category: ClassVar[str] = "normalization"
    ctor_args: ClassVar[tuple[str, ...]] = ()

    def _shape(self, x: T):
        dims = self.dims  # type: ignore[attr-defined]  (each kind declares the field)
        if not 1 <= dims <= len(x.shape):
            raise ShapeError(f"{self.kind} over the last {dims} dims needs an input with that "
                             f"many, got {fmt_shape(x.shape)}")
        return x.shape[-dims:]

    def infer(self, ins):
        self._shape(ins[0])
        return ins[0]

    def init_source(self, ins):
        shape = self._shape(ins[0])
        rest = self.kwargs_source(list(self.ctor_args))
        return f"{self.torch_name}({_normalized_shape(shape)}{', ' + rest if rest else ''})"


@register
class LayerNorm(_TrailingNorm):
    """Layer normalization over the last `dims` dims (default 1); their sizes are inferred."""

    kind: ClassVar[str] = "layernorm"
    torch_name: ClassVar[str] = "nn.LayerNorm"
    ctor_args: ClassVar[tuple[str, ...]] = ("eps", "elementwise_affine", "bias")
    dims: int = Field(1, description="how many trailing dims to normalize over")
    eps: float = Field(1e-5, description="added to the variance for stability")
    elementwise_affine: bool = Field(True, description="learn a scale (and a shift)")
    bias: bool = Field(True, description="learn the shift as well as the scale")

    def params(self, ins):
        if not self.elementwise_affine:
            return {}
        shape = self._shape(ins[0])
        return {"weight": shape, "bias": shape} if self.bias else {"weight": shape}


# ---- group, instance and RMS norm -----------------------------------------------------------

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
        return _channel_affine(ins, self.affine)

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


InstanceNorm1d = variant(_InstanceNorm, "instancenorm1d", "nn.InstanceNorm1d",
                         "Instance normalization over [C, L], per sample and channel; "
                         "num_features is inferred.", ranks=(2,))
InstanceNorm2d = variant(_InstanceNorm, "instancenorm2d", "nn.InstanceNorm2d",
                         "Instance normalization over [C, H, W], per sample and channel; "
                         "num_features is inferred.", ranks=(3,))
InstanceNorm3d = variant(_InstanceNorm, "instancenorm3d", "nn.InstanceNorm3d",
                         "Instance normalization over [C, D, H, W], per sample and channel; "
                         "num_features is inferred.", ranks=(4,))


@register
class RMSNorm(_TrailingNorm):
    """Root-mean-square normalization over the last `dims` dims (default 1); sizes are inferred."""

    kind: ClassVar[str] = "rmsnorm"
    torch_name: ClassVar[str] = "nn.RMSNorm"
    ctor_args: ClassVar[tuple[str, ...]] = ("eps", "elementwise_affine")
    dims: PositiveInt = Field(default=1, description="how many trailing dims to normalize over")
    eps: Optional[float] = Field(default=None, description="added to the mean square (None: the "
                                 "dtype's machine epsilon)")
    elementwise_affine: bool = Field(default=True, description="learn a per-element scale")

    def params(self, ins):
        return {"weight": self._shape(ins[0])} if self.elementwise_affine else {}


def _normalized_shape(shape) -> str:
    """torch's normalized_shape: one int, or a list of them (as torchvision writes it)."""
    if len(shape) == 1:
        return py(shape[0])
    return "[" + ", ".join(py(s) for s in shape) + "]"
