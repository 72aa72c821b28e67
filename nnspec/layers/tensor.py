"""Tensor plumbing: arithmetic, concat, flatten and friends. These have no parameters; most are
emitted as plain torch calls."""
from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import Field

from nnspec.layers.base import (ANY_DTYPE, Layer, ShapeError, T, fmt_shape, norm_dim, numel, py,
                                register, variant)


def broadcast(a: T, b: T, what: str) -> T:
    """Per-sample broadcasting: equal ranks (the batch leads both), each dim equal or 1."""
    sa, sb = a.shape, b.shape
    if len(sa) != len(sb):
        raise ShapeError(f"{what}: shapes {fmt_shape(sa)} and {fmt_shape(sb)} have different ranks",
                         "with the batch dim in front, both sides need the same number of dims "
                         "(use 1 for a dim to broadcast)")
    out = []
    for i, (x, y) in enumerate(zip(sa, sb)):
        if x != y and 1 not in (x, y):
            raise ShapeError(f"{what}: shapes {fmt_shape(sa)} and {fmt_shape(sb)} do not match "
                             f"(dim {i + 1}: {x} vs {y})",
                             "the two sides must have equal shapes or broadcast (one of them 1)")
        out.append(max(x, y))
    return T(tuple(out), promote(a.dtype, b.dtype))


def promote(a: str, b: str) -> str:
    """torch's type promotion between two tensors: float over long over bool."""
    for dtype in ("float", "long"):
        if dtype in (a, b):
            return dtype
    return "bool"


class FunctionalOnly(Layer):
    """A parameter-free op that never becomes a module; naming it names its result."""

    functional_only: ClassVar[bool] = True
    category: ClassVar[str] = "tensor"

    def init_source(self, ins):  # pragma: no cover - never called for functional-only kinds
        raise NotImplementedError


class _Arith(FunctionalOnly):
    inputs: ClassVar[tuple[str, ...]] = ("x", "y?")
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    symbol: ClassVar[str] = "+"
    other: Optional[float] = Field(default=None, description="a number in place of the second tensor")

    def infer(self, ins):
        if len(ins) == 2:
            if self.other is not None:
                raise ShapeError(f"{self.kind} takes a second tensor or `other`, not both")
            return broadcast(ins[0], ins[1], self.kind)
        if self.other is None:
            raise ShapeError(f"{self.kind} needs a second tensor or `other=NUMBER`")
        return T(ins[0].shape, "float" if isinstance(self.other, float) else ins[0].dtype)

    def functional_source(self, args, ins):
        right = args[1] if len(args) == 2 else py(self.other)
        return f"{args[0]} {self.symbol} {right}"


Add = variant(_Arith, "add", "torch.add", "Elementwise sum (a residual connection): `a + b` in a "
              "spec.", symbol="+", name="Add")


@register
class Sub(_Arith):
    """Elementwise difference: `a - b` in a spec."""

    kind: ClassVar[str] = "sub"
    torch_name: ClassVar[str] = "torch.sub"
    symbol: ClassVar[str] = "-"

    def infer(self, ins):
        # torch refuses `-` with a bool tensor on either side
        if any(t.dtype == "bool" for t in ins):
            raise ShapeError(f"sub: `-` with a bool tensor ({' and '.join(str(t) for t in ins)}) "
                             "is not defined", "for a mask, use `1 - x` on a long or float "
                             "version of it, e.g. zeros_like(x, dtype=\"long\") + x")
        return super().infer(ins)


Mul = variant(_Arith, "mul", "torch.mul", "Elementwise product (gating, per-channel scales): "
              "`a * b` in a spec.", symbol="*", name="Mul")


@register
class Div(_Arith):
    """Elementwise quotient: `a / b` in a spec."""

    kind: ClassVar[str] = "div"
    torch_name: ClassVar[str] = "torch.div"
    symbol: ClassVar[str] = "/"

    def infer(self, ins):
        # `/` on integer or bool tensors is true division, as in Python: the result is float
        return T(super().infer(ins).shape)


@register
class Pow(_Arith):
    """Elementwise power (`x ** 2` in a spec): a float tensor to a number or to a tensor."""

    kind: ClassVar[str] = "pow"
    torch_name: ClassVar[str] = "torch.pow"
    symbol: ClassVar[str] = "**"
    # an integer tensor to a negative power is an error in torch, and to a float one a float:
    # float only keeps the rule simple and the same in generated code and the interpreter
    input_dtypes: ClassVar[tuple[str, ...]] = ("float",)

    def infer(self, ins):
        if len(ins) == 2 and ins[1].dtype != "float":
            raise ShapeError(f"pow needs float tensors, got {ins[0]} ** {ins[1]}",
                             "make the exponent a float tensor, or use a number")
        return super().infer(ins)


@register
class Matmul(FunctionalOnly):
    """Batched matrix product over the last two dims: `a @ b` in a spec."""

    kind: ClassVar[str] = "matmul"
    torch_name: ClassVar[str] = "torch.matmul"
    inputs: ClassVar[tuple[str, ...]] = ("x", "y")

    def infer(self, ins):
        a, b = ins
        if b.dtype != "float":  # the first input's dtype is checked with every kind's
            raise ShapeError(f"matmul needs float tensors, got {a} @ {b}")
        if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matmul: shapes {fmt_shape(a.shape)} and {fmt_shape(b.shape)} cannot "
                             f"be multiplied (need [..., n, k] @ [..., k, m])")
        lead = broadcast(T(a.shape[:-2]), T(b.shape[:-2]), "matmul").shape
        return T(lead + (a.shape[-2], b.shape[-1]))

    def flops(self, ins, outs):
        return 2 * numel(outs[0].shape) * ins[0].shape[-1]

    def functional_source(self, args, ins):
        return f"{args[0]} @ {args[1]}"


@register
class Cat(FunctionalOnly):
    """Concatenate tensors along `dim` (torch dims: 1 is channels)."""

    kind: ClassVar[str] = "cat"
    torch_name: ClassVar[str] = "torch.cat"
    inputs: ClassVar[tuple[str, ...]] = ("*xs",)
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(1, description="the dim to join along (0 is the batch)")

    def infer(self, ins):
        rank = len(ins[0].shape)
        d = norm_dim(self.dim, rank, "cat")
        for t in ins[1:]:
            if len(t.shape) != rank or any(t.shape[i] != ins[0].shape[i] for i in range(rank) if i != d):
                raise ShapeError(f"cat along dim {self.dim}: shapes "
                                 + ", ".join(fmt_shape(t.shape) for t in ins)
                                 + " differ outside that dim")
        size = sum(t.shape[d] for t in ins)
        dtype = ins[0].dtype
        for t in ins[1:]:
            dtype = promote(dtype, t.dtype)  # torch.cat promotes mixed dtypes
        return T(ins[0].shape[:d] + (size,) + ins[0].shape[d + 1:], dtype)

    def functional_source(self, args, ins):
        return f"torch.cat([{', '.join(args)}], dim={py(self.dim)})"


@register
class Flatten(Layer):
    """Flatten dims start_dim..end_dim into one (torch.nn.Flatten: keeps the batch)."""

    kind: ClassVar[str] = "flatten"
    torch_name: ClassVar[str] = "nn.Flatten"
    category: ClassVar[str] = "tensor"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    start_dim: int = Field(1, description="first dim to flatten (0 is the batch)")
    end_dim: int = Field(-1, description="last dim to flatten")

    def infer(self, ins):
        s = ins[0].shape
        a, b = norm_dim(self.start_dim, len(s), "flatten"), norm_dim(self.end_dim, len(s), "flatten")
        if a > b:
            raise ShapeError(f"flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim}")
        return T(s[:a] + (numel(s[a:b + 1]),) + s[b + 1:], ins[0].dtype)

    def init_source(self, ins):
        return f"nn.Flatten({self.kwargs_source(['start_dim', 'end_dim'])})"

    def functional_source(self, args, ins):
        if self.end_dim == -1:
            return f"torch.flatten({args[0]}, {py(self.start_dim)})"
        return f"torch.flatten({args[0]}, {py(self.start_dim)}, {py(self.end_dim)})"
