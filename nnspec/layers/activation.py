"""Activations: the seed's neurons (tanh, relu, sigmoid, identity, prelu, leaky_relu, swish, gelu)
and torch.nn's common set."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, fmt_shape, norm_dim, py, register, variant


class _Activation(Layer):
    """An elementwise function; `functional` is the torch function for an unnamed use. Its
    arguments are the torch class's keyword arguments, under the same names."""

    category: ClassVar[str] = "activation"
    functional: ClassVar[str] = ""

    def init_source(self, ins):
        return f"{self.torch_name}({self.kwargs_source(self.arg_names())})"

    def functional_source(self, args, ins):
        if not self.functional:
            return None
        kw = self.kwargs_source(self.arg_names())
        return f"{self.functional}({args[0]}{', ' + kw if kw else ''})"


def _simple(kind: str, torch_name: str, functional: str, doc: str) -> type[Layer]:
    """An activation without arguments, named as the seed named its classes (`Relu6`)."""
    return variant(_Activation, kind, torch_name, doc, name=kind.title().replace("_", ""),
                   functional=functional)


_simple("relu", "nn.ReLU", "torch.relu", "max(0, x).")
_simple("relu6", "nn.ReLU6", "F.relu6", "min(max(0, x), 6), as in MobileNetV2.")
_simple("tanh", "nn.Tanh", "torch.tanh", "Hyperbolic tangent.")
_simple("sigmoid", "nn.Sigmoid", "torch.sigmoid", "Logistic sigmoid 1 / (1 + e^-x).")
_simple("silu", "nn.SiLU", "F.silu", "x * sigmoid(x) (swish with beta 1).")
_simple("swish", "nn.SiLU", "F.silu", "x * sigmoid(x); the same as silu.")
_simple("mish", "nn.Mish", "F.mish", "x * tanh(softplus(x)).")
_simple("hardsigmoid", "nn.Hardsigmoid", "F.hardsigmoid", "Piecewise-linear sigmoid.")
_simple("hardswish", "nn.Hardswish", "F.hardswish", "x * hardsigmoid(x), as in MobileNetV3.")
_simple("tanhshrink", "nn.Tanhshrink", "F.tanhshrink", "x - tanh(x).")


@register
class Gelu(_Activation):
    """Gaussian error linear unit; approximate='tanh' is GPT-2's gelu_new."""

    kind: ClassVar[str] = "gelu"
    torch_name: ClassVar[str] = "nn.GELU"
    functional: ClassVar[str] = "F.gelu"
    approximate: Literal["none", "tanh"] = Field("none", description="'tanh' for the tanh approximation")


@register
class LeakyRelu(_Activation):
    """max(0, x) + negative_slope * min(0, x)."""

    kind: ClassVar[str] = "leaky_relu"
    torch_name: ClassVar[str] = "nn.LeakyReLU"
    functional: ClassVar[str] = "F.leaky_relu"
    negative_slope: float = Field(0.01, description="slope for negative inputs")


@register
class Elu(_Activation):
    """Exponential linear unit."""

    kind: ClassVar[str] = "elu"
    torch_name: ClassVar[str] = "nn.ELU"
    functional: ClassVar[str] = "F.elu"
    alpha: float = Field(1.0, description="saturation value for negative inputs")


@register
class Softplus(_Activation):
    """log(1 + e^(beta x)) / beta."""

    kind: ClassVar[str] = "softplus"
    torch_name: ClassVar[str] = "nn.Softplus"
    functional: ClassVar[str] = "F.softplus"
    beta: float = Field(1.0, description="sharpness")
    threshold: float = Field(20.0, description="above beta*x > threshold the function is linear")


@register
class Hardtanh(_Activation):
    """Clamp to [min_val, max_val]."""

    kind: ClassVar[str] = "hardtanh"
    torch_name: ClassVar[str] = "nn.Hardtanh"
    functional: ClassVar[str] = "F.hardtanh"
    min_val: float = Field(-1.0, description="lower clamp")
    max_val: float = Field(1.0, description="upper clamp")


@register
class Prelu(_Activation):
    """Leaky ReLU with a learned slope: one shared, or one per channel (num_parameters=C)."""

    kind: ClassVar[str] = "prelu"
    torch_name: ClassVar[str] = "nn.PReLU"
    num_parameters: PositiveInt = Field(1, description="1 (shared slope) or the channel count")
    init: float = Field(0.25, description="initial slope")

    def infer(self, ins):
        (x,) = ins
        if self.num_parameters != 1 and (not x.shape or x.shape[0] != self.num_parameters):
            raise ShapeError(f"prelu with num_parameters={self.num_parameters} needs that many "
                             f"channels (dim 1), got {fmt_shape(x.shape)}")
        return x

    def params(self, ins):
        return {"weight": (self.num_parameters,)}


class _SoftmaxLike(_Activation):
    dim: int = Field(-1, description="the dim to normalize over (0 is the batch)")

    def infer(self, ins):
        norm_dim(self.dim, len(ins[0].shape), self.kind)
        return ins[0]

    def init_source(self, ins):
        return f"{self.torch_name}(dim={py(self.dim)})"

    def functional_source(self, args, ins):
        return f"{self.functional}({args[0]}, dim={py(self.dim)})"


Softmax = variant(_SoftmaxLike, "softmax", "nn.Softmax",
                  "Softmax over `dim` (torch dims: 0 is the batch).", functional="torch.softmax")
LogSoftmax = variant(_SoftmaxLike, "log_softmax", "nn.LogSoftmax", "log(softmax(x)) over `dim`.",
                     functional="torch.log_softmax")
