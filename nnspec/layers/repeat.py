"""Tensors made by repeating: position ranges (torch.arange along a dim, as GPT's and BERT's
position ids), repeat_interleave (grouped-query attention's shared key/value heads) and expand
(a size-1 dim broadcast to a size). All are plain torch calls (no module).

Dims follow torch: dim 0 is the batch, which none of these may count, repeat or expand. Shapes
given as arguments (expand) are per sample: the batch is left out.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from nnspec.layers.base import ShapeError, T, fmt_shape, norm_dim, py, register
from nnspec.layers.tensor import FunctionalOnly

ANY_DTYPE = ("float", "long", "bool")


@register
class Positions(FunctionalOnly):
    """Position ids start..start+T-1 for the T entries of `dim` of the input, for every sample."""

    # only the input's shape counts (its values are not read): `positions(ids) -> wpe` is
    # GPT-2's `wpe(torch.arange(T))`, and positions(x, dtype="float") feeds sin/cos tables

    kind: ClassVar[str] = "positions"
    torch_name: ClassVar[str] = "torch.arange"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(default=1, description="the dim whose length T counts (torch dims: 1 is "
                     "the sequence of [B, T, ...])")
    start: NonNegativeInt = Field(default=0, description="the first position")
    dtype: Literal["long", "float"] = Field(default="long", description="dtype of the result")

    def _dim(self, x: T) -> int:
        return norm_dim(self.dim, len(x.shape), f"positions of {fmt_shape(x.shape)}")

    def infer(self, ins):
        (x,) = ins
        return T((x.shape[self._dim(x)],), self.dtype)

    def functional_source(self, args, ins):
        (x,), d = args, self._dim(ins[0]) + 1
        bounds = f"{x}.shape[{d}]" if not self.start else \
            f"{py(self.start)}, {py(self.start)} + {x}.shape[{d}]"
        dtype = ", dtype=torch.get_default_dtype()" if self.dtype == "float" else ""
        return f"torch.arange({bounds}{dtype}, device={x}.device).expand({x}.shape[0], -1)"


@register
class RepeatInterleave(FunctionalOnly):
    """Repeat each entry of `dim` `repeats` times in place: [a, b] -> [a, a, b, b] for 2."""

    kind: ClassVar[str] = "repeat_interleave"
    torch_name: ClassVar[str] = "torch.repeat_interleave"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    repeats: PositiveInt = Field(le=10_000, description="how many copies of each entry")
    dim: int = Field(description="the dim to repeat along (torch dims: 0 is the batch)")

    def infer(self, ins):
        s = ins[0].shape
        d = norm_dim(self.dim, len(s), f"repeat_interleave of {fmt_shape(s)}")
        return T(s[:d] + (s[d] * self.repeats,) + s[d + 1:], ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.repeat_interleave({args[0]}, {py(self.repeats)}, dim={py(self.dim)})"


@register
class Expand(FunctionalOnly):
    """Broadcast size-1 dims to `shape` without copying (-1 keeps a dim); batch excluded."""

    kind: ClassVar[str] = "expand"
    torch_name: ClassVar[str] = "torch.Tensor.expand"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    shape: tuple[int, ...] = Field(description="per-sample shape, without the batch; -1 keeps "
                                   "that dim's size")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 1 and s != -1 for s in shape):
            raise ValueError(f"sizes must be positive (or -1 to keep a dim), got {shape}")
        return shape

    def infer(self, ins):
        s = ins[0].shape
        if len(self.shape) != len(s):
            raise ShapeError(f"expand: shape {fmt_shape(self.shape)} has {len(self.shape)} dims "
                             f"besides the batch, but the input {fmt_shape(s)} has {len(s)}",
                             "give one size per dim of the input (-1 keeps one); add a dim "
                             "first with unsqueeze")
        out = []
        for i, (have, want) in enumerate(zip(s, self.shape)):
            if want != -1 and have not in (1, want):
                raise ShapeError(f"expand: dim {i + 1} of {fmt_shape(s)} has size {have}, which "
                                 f"cannot expand to {want}",
                                 "only a dim of size 1 expands; use repeat_interleave to "
                                 "repeat a larger one")
            out.append(have if want == -1 else want)
        return T(tuple(out), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"{args[0]}.expand(-1, {', '.join(py(s) for s in self.shape)})"
