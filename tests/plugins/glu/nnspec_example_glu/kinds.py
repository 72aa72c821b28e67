"""The layer kind as nnspec sees it: arguments, shape rule, parameters, FLOPs and generated code.

It imports no torch, so checking a spec stays fast with the plugin installed.
"""
from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, PositiveInt

import nnspec
from nnspec.layers import Layer, ShapeError, T, fmt_shape, py


@nnspec.register_layer
class GatedLinear(Layer):
    """A gated linear unit: [a, b] = x W^T + c split in halves, then a * sigmoid(b)."""

    kind: ClassVar[str] = "gated_linear"
    category: ClassVar[str] = "linear"
    # generated model.py imports this module and calls its GatedLinear
    imports: ClassVar[tuple[str, ...]] = ("nnspec_example_glu.modules",)
    out_features: PositiveInt = Field(description="size of each output sample")
    bias: bool = Field(True, description="add a learned bias")

    def infer(self, ins):
        (x,) = ins
        if not x.shape:
            raise ShapeError(f"gated_linear expects at least a 2-d input [B, F], got "
                             f"{fmt_shape(x.shape)}", "flatten the input first")
        return T(x.shape[:-1] + (self.out_features,))

    def params(self, ins):
        p = {"proj.weight": (2 * self.out_features, ins[0].shape[-1])}
        if self.bias:
            p["proj.bias"] = (2 * self.out_features,)
        return p

    def flops(self, ins, outs):
        # the projection's matmul, as torch.utils.flop_counter counts it
        return 2 * math.prod(ins[0].shape) * 2 * self.out_features

    def init_source(self, ins):
        bias = "" if self.bias else ", bias=False"
        return (f"nnspec_example_glu.modules.GatedLinear({py(ins[0].shape[-1])}, "
                f"{py(self.out_features)}{bias})")
