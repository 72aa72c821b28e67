"""Fully connected layers: linear, bilinear, identity."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, T, fmt_shape, numel, py, register


@register
class Linear(Layer):
    """y = x W^T + b over the last dimension; in_features is inferred."""

    kind: ClassVar[str] = "linear"
    torch_name: ClassVar[str] = "nn.Linear"
    category: ClassVar[str] = "linear"
    out_features: PositiveInt = Field(description="size of each output sample")
    bias: bool = Field(True, description="add a learned bias")

    def infer(self, ins):
        (x,) = ins
        if not x.shape:
            raise ShapeError(f"linear expects at least a 2-d input [B, F], got {fmt_shape(x.shape)}",
                             "flatten the input first")
        return T(x.shape[:-1] + (self.out_features,))

    def params(self, ins):
        p = {"weight": (self.out_features, ins[0].shape[-1])}
        if self.bias:
            p["bias"] = (self.out_features,)
        return p

    def flops(self, ins, outs):
        return 2 * numel(ins[0].shape) * self.out_features

    def init_source(self, ins):
        bias = "" if self.bias else ", bias=False"
        return f"nn.Linear({py(ins[0].shape[-1])}, {py(self.out_features)}{bias})"


@register
class Bilinear(Layer):
    """y = x1^T A x2 + b (torch.nn.Bilinear); both in_features are inferred."""

    kind: ClassVar[str] = "bilinear"
    torch_name: ClassVar[str] = "nn.Bilinear"
    category: ClassVar[str] = "linear"
    inputs: ClassVar[tuple[str, ...]] = ("x1", "x2")
    out_features: PositiveInt = Field(description="size of each output sample")
    bias: bool = Field(True, description="add a learned bias")

    def infer(self, ins):
        a, b = ins
        if b.dtype != "float":  # the first input's dtype is checked with every kind's
            raise ShapeError(f"bilinear needs float inputs, got {a} and {b}")
        if not a.shape or not b.shape or a.shape[:-1] != b.shape[:-1]:
            raise ShapeError(f"bilinear expects inputs that agree on all but the last dim, got "
                             f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
        return T(a.shape[:-1] + (self.out_features,))

    def params(self, ins):
        p = {"weight": (self.out_features, ins[0].shape[-1], ins[1].shape[-1])}
        if self.bias:
            p["bias"] = (self.out_features,)
        return p

    def flops(self, ins, outs):
        # torch computes it with a bilinear kernel that flop_counter does not count
        return 0

    def init_source(self, ins):
        bias = "" if self.bias else ", bias=False"
        return f"nn.Bilinear({py(ins[0].shape[-1])}, {py(ins[1].shape[-1])}, {py(self.out_features)}{bias})"


@register
class Identity(Layer):
    """Passes its input through unchanged (the seed's "linear" activation)."""

    kind: ClassVar[str] = "identity"
    torch_name: ClassVar[str] = "nn.Identity"
    category: ClassVar[str] = "activation"
    input_dtypes: ClassVar[tuple[str, ...]] = ("float", "long", "bool")

    def init_source(self, ins):
        return "nn.Identity()"

    def functional_source(self, args, ins):
        return args[0]
