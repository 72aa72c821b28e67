"""Fully connected layers: linear, bilinear, identity."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt

from nnspec.layers.base import ANY_DTYPE, Layer, ShapeError, T, fmt_shape, numel, py, register


class _Affine(Layer):
    """A learned map to `out_features` from the last dim of each input: weight
    [out_features, *in_features] and an optional bias, built as torch_name(*in_features, out)."""

    category: ClassVar[str] = "linear"
    out_features: PositiveInt = Field(description="size of each output sample")
    bias: bool = Field(True, description="add a learned bias")

    @staticmethod
    def _in_features(ins: list[T]) -> tuple[int, ...]:
        return tuple(t.shape[-1] for t in ins)

    def params(self, ins):
        p = {"weight": (self.out_features, *self._in_features(ins))}
        if self.bias:
            p["bias"] = (self.out_features,)
        return p

    def init_source(self, ins):
        sizes = ", ".join(py(n) for n in (*self._in_features(ins), self.out_features))
        bias = "" if self.bias else ", bias=False"
        return f"{self.torch_name}({sizes}{bias})"


@register
class Linear(_Affine):
    """y = x W^T + b over the last dimension; in_features is inferred."""

    kind: ClassVar[str] = "linear"
    torch_name: ClassVar[str] = "nn.Linear"

    def infer(self, ins):
        (x,) = ins
        if not x.shape:
            raise ShapeError(f"linear expects at least a 2-d input [B, F], got {fmt_shape(x.shape)}",
                             "flatten the input first")
        return T(x.shape[:-1] + (self.out_features,))

    def flops(self, ins, outs):
        return 2 * numel(ins[0].shape) * self.out_features


@register
class Bilinear(_Affine):
    """y = x1^T A x2 + b (torch.nn.Bilinear); both in_features are inferred."""

    kind: ClassVar[str] = "bilinear"
    torch_name: ClassVar[str] = "nn.Bilinear"
    inputs: ClassVar[tuple[str, ...]] = ("x1", "x2")

    def infer(self, ins):
        a, b = ins
        if b.dtype != "float":  # the first input's dtype is checked with every kind's
            raise ShapeError(f"bilinear needs float inputs, got {a} and {b}")
        if not a.shape or not b.shape or a.shape[:-1] != b.shape[:-1]:
            raise ShapeError(f"bilinear expects inputs that agree on all but the last dim, got "
                             f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
        return T(a.shape[:-1] + (self.out_features,))

    def flops(self, ins, outs):
        # torch computes it with a bilinear kernel that flop_counter does not count
        return 0


@register
class Identity(Layer):
    """Passes its input through unchanged (the seed's "linear" activation)."""

    kind: ClassVar[str] = "identity"
    torch_name: ClassVar[str] = "nn.Identity"
    category: ClassVar[str] = "activation"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE

    def init_source(self, ins):
        return "nn.Identity()"

    def functional_source(self, args, ins):
        return args[0]
