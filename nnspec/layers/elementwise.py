"""Element-wise tensor math that published models compute with: abs, log, exp, sin, cos, sqrt,
neg; comparisons that give bool masks and `where` that selects by them; casts between float,
long and bool; `number - tensor` and `number / tensor`. All are plain torch calls (no module).

Dtypes follow torch, except where torch would quietly turn a long tensor into a float one (log,
exp, sin, cos, sqrt): there the spec says so with `cast(x, "float")`, and a diagnostic asks for it.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field

from nnspec.layers.base import ShapeError, T, fmt_shape, py, register, variant
from nnspec.layers.tensor import FunctionalOnly, broadcast, promote

ANY_DTYPE = ("float", "long", "bool")
CAST_HELP = 'cast it first, e.g. `cast(x, "float")`'


# ---- unary math ---------------------------------------------------------------------------
class _Unary(FunctionalOnly):
    # every dtype reaches `infer`, which refuses the wrong ones with a help that names the cast
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    accepts: ClassVar[tuple[str, ...]] = ("float",)

    def infer(self, ins):
        (x,) = ins
        if x.dtype not in self.accepts:
            want = " or ".join(self.accepts)
            raise ShapeError(f"{self.kind} needs a {want} tensor, got a {x.dtype} tensor "
                             f"{fmt_shape(x.shape)}",
                             CAST_HELP if "float" in self.accepts else None)
        return x

    def functional_source(self, args, ins):
        return f"{self.torch_name}({args[0]})"


@register
class Abs(_Unary):
    """Absolute value, element-wise (float or long; keeps the dtype)."""

    kind: ClassVar[str] = "abs"
    torch_name: ClassVar[str] = "torch.abs"
    accepts: ClassVar[tuple[str, ...]] = ("float", "long")


@register
class Exp(_Unary):
    """e to the power of each element."""

    kind: ClassVar[str] = "exp"
    torch_name: ClassVar[str] = "torch.exp"


@register
class Log(_Unary):
    """Natural logarithm, element-wise (NaN below 0, -inf at 0, as torch)."""

    kind: ClassVar[str] = "log"
    torch_name: ClassVar[str] = "torch.log"


@register
class Sin(_Unary):
    """Sine, element-wise (radians)."""

    kind: ClassVar[str] = "sin"
    torch_name: ClassVar[str] = "torch.sin"


@register
class Cos(_Unary):
    """Cosine, element-wise (radians)."""

    kind: ClassVar[str] = "cos"
    torch_name: ClassVar[str] = "torch.cos"


@register
class Sqrt(_Unary):
    """Square root, element-wise (NaN below 0, as torch)."""

    kind: ClassVar[str] = "sqrt"
    torch_name: ClassVar[str] = "torch.sqrt"


@register
class Neg(_Unary):
    """Negation, element-wise (float or long; keeps the dtype)."""

    kind: ClassVar[str] = "neg"
    torch_name: ClassVar[str] = "torch.neg"
    accepts: ClassVar[tuple[str, ...]] = ("float", "long")

    def functional_source(self, args, ins):
        return f"-{args[0]}"


# ---- comparisons and where ----------------------------------------------------------------
Number = Union[int, float]   # an int stays an int: `where(m, ids, 0)` is still long


class _Compare(FunctionalOnly):
    inputs: ClassVar[tuple[str, ...]] = ("x", "y?")
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    symbol: ClassVar[str] = "=="
    other: Optional[Number] = Field(default=None,
                                    description="a number in place of the second tensor")

    def infer(self, ins):
        if len(ins) == 2:
            if self.other is not None:
                raise ShapeError(f"{self.kind} takes a second tensor or `other`, not both")
            return T(broadcast(ins[0], ins[1], self.kind).shape, "bool")
        if self.other is None:
            raise ShapeError(f"{self.kind} needs a second tensor or `other=NUMBER`")
        return T(ins[0].shape, "bool")

    def functional_source(self, args, ins):
        right = args[1] if len(args) == 2 else py(self.other)
        return f"{args[0]} {self.symbol} {right}"


# the comparisons differ only in their name, torch function and operator
Eq = variant(_Compare, "eq", "torch.eq",
             "`x == y` element-wise (y a tensor or a number): a bool mask.", symbol="==",
             name="Eq")
Ne = variant(_Compare, "ne", "torch.ne",
             "`x != y` element-wise: a bool mask (`ids != 0` marks the tokens).", symbol="!=",
             name="Ne")
Lt = variant(_Compare, "lt", "torch.lt", "`x < y` element-wise: a bool mask.", symbol="<",
             name="Lt")
Le = variant(_Compare, "le", "torch.le", "`x <= y` element-wise: a bool mask.", symbol="<=",
             name="Le")
Gt = variant(_Compare, "gt", "torch.gt", "`x > y` element-wise: a bool mask.", symbol=">",
             name="Gt")
Ge = variant(_Compare, "ge", "torch.ge", "`x >= y` element-wise: a bool mask.", symbol=">=",
             name="Ge")


@register
class Where(FunctionalOnly):
    """Pick x where the bool condition holds, else y (a tensor or `other`); shapes broadcast."""

    kind: ClassVar[str] = "where"
    torch_name: ClassVar[str] = "torch.where"
    inputs: ClassVar[tuple[str, ...]] = ("condition", "x", "y?")
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    other: Optional[Number] = Field(default=None, description="a number in place of y")

    def infer(self, ins):
        cond, x, *rest = ins
        if cond.dtype != "bool":
            raise ShapeError(f"where: the condition must be a bool tensor, got a {cond.dtype} "
                             f"tensor {fmt_shape(cond.shape)}",
                             "make a mask with a comparison, e.g. `where(x > 0, x, y)`, or "
                             "`cast(c, \"bool\")`")
        if rest and self.other is not None:
            raise ShapeError("where takes a tensor y or `other`, not both")
        if not rest and self.other is None:
            raise ShapeError("where needs a tensor y or `other=NUMBER` for where the condition "
                             "is false")
        shape = self._broadcast(ins)
        if rest:
            dtype = promote(x.dtype, rest[0].dtype)
        elif isinstance(self.other, float):
            dtype = "float"
        else:   # an int keeps a long x long and makes a bool x long, as torch does
            dtype = "long" if x.dtype == "bool" else x.dtype
        return T(shape, dtype)

    @staticmethod
    def _broadcast(ins: list[T]) -> tuple[int, ...]:
        """The common shape of condition, x and y: equal ranks, each dim equal or 1."""
        parts = [f"{n} {fmt_shape(t.shape)}" for n, t in zip(("condition", "x", "y"), ins)]
        names = ", ".join(parts[:-1]) + " and " + parts[-1]
        if len({len(t.shape) for t in ins}) > 1:
            raise ShapeError(f"where: {names} have different ranks",
                             "with the batch dim in front, all need the same number of dims "
                             "(use unsqueeze for a dim to broadcast)")
        out = []
        for i, sizes in enumerate(zip(*(t.shape for t in ins))):
            if len(set(sizes) - {1}) > 1:
                raise ShapeError(f"where: {names} do not broadcast (dim {i + 1}: "
                                 f"{' vs '.join(map(str, sizes))})",
                                 "each dim must be equal in all of them, or 1 where it repeats")
            out.append(max(sizes))
        return tuple(out)

    def functional_source(self, args, ins):
        y = args[2] if len(args) == 3 else py(self.other)
        return f"torch.where({args[0]}, {args[1]}, {y})"


# ---- casts --------------------------------------------------------------------------------
@register
class Cast(FunctionalOnly):
    """Convert to float, long (rounding toward zero) or bool (nonzero is true)."""

    kind: ClassVar[str] = "cast"
    torch_name: ClassVar[str] = "torch.Tensor.to"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dtype: Literal["float", "long", "bool"] = Field(description="the dtype of the result")

    def infer(self, ins):
        return T(ins[0].shape, self.dtype)

    def functional_source(self, args, ins):
        if self.dtype == ins[0].dtype:
            return args[0]
        if self.dtype == "float":
            # "float" is the dtype the model's own tensors have (float64 after .double()), as
            # zeros_like(dtype="float") makes it, not always float32
            return f"{args[0]}.to(torch.get_default_dtype())"
        return f"{args[0]}.{self.dtype}()"


# ---- number - tensor, number / tensor -----------------------------------------------------
class _Reversed(FunctionalOnly):
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    symbol: ClassVar[str] = "-"
    other: float = Field(description="the number on the left of the operator")

    def functional_source(self, args, ins):
        return f"{py(self.other)} {self.symbol} {args[0]}"


@register
class RSub(_Reversed):
    """`other - x`: a number minus a tensor (`1.0 - mask` in a spec); float or long x."""

    kind: ClassVar[str] = "rsub"
    torch_name: ClassVar[str] = "torch.rsub"
    symbol: ClassVar[str] = "-"

    def infer(self, ins):
        (x,) = ins
        if x.dtype == "bool":   # torch refuses `-` with a bool tensor
            raise ShapeError(f"rsub: `{py(self.other)} - x` is not defined for a bool tensor x "
                             f"{fmt_shape(x.shape)}",
                             'cast the mask first: `1.0 - cast(mask, "float")`')
        return T(x.shape, "float")


@register
class RDiv(_Reversed):
    """`other / x`: a number divided by a tensor (`1.0 / x` in a spec); the result is float."""

    kind: ClassVar[str] = "rdiv"
    torch_name: ClassVar[str] = "torch.div"
    symbol: ClassVar[str] = "/"

    def infer(self, ins):
        return T(ins[0].shape, "float")
