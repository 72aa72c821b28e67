"""Arithmetic on plain values at check time, with Python's semantics and the checker's bounds.

Every operator and numeric builtin gives what Python gives for the same numbers (`//` and `%`
round toward minus infinity, `**` of a negative int exponent is a float, `round` is banker's
rounding), or a located error where Python would raise or return something a spec cannot hold:
division by zero, a complex number, or a magnitude past MAX_INT. Bounds are checked before an
operation that could take long to compute (`10 ** 10 ** 9`), not after.
"""
from __future__ import annotations

import math
from typing import Callable

from nnspec.lang import syntax as S
from nnspec.lang.check.values import MAX_INT, Abort, describe

Error = Callable[..., Abort]


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def scalar_binop(error: Error, op: str, a, b, node: S.BinOp):
    """`a op b` on plain values, as Python computes it."""
    if op in ("==", "!="):
        return (a == b) == (op == "==")
    if not (is_number(a) and is_number(b)):
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        raise error("E0314", f"cannot apply `{op}` to {describe(a)} and {describe(b)}", node.span,
                    "turn a boolean into a number with int(...)" if isinstance(a, bool) or
                    isinstance(b, bool) else None)
    if op in ("<", "<=", ">", ">="):
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op in ("/", "//", "%") and b == 0:
        raise error("E0316", "division by zero", node.right.span)
    if op == "**":
        return power(error, a, b, node.span)
    compute = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
               "/": lambda: a / b, "//": lambda: a // b, "%": lambda: a % b}.get(op)
    if compute is None:
        raise error("E0314", f"`{op}` is not defined on numbers", node.span)
    try:
        return bounded(error, compute(), node.span)
    except OverflowError:
        raise error("E0317", "number out of range", node.span,
                    f"values are limited to magnitude {MAX_INT}") from None


def power(error: Error, a, b, span):
    """`a ** b` (and `pow(a, b)`) as Python computes it, refused before it would grow past
    MAX_INT, and where Python would divide by zero or give a complex number."""
    if a == 0 and b < 0:
        raise error("E0316", "division by zero: 0 to a negative power", span)
    if a < 0 and isinstance(b, float) and not b.is_integer():
        raise error("E0317", f"({a}) ** {b} is not a real number", span,
                    "a negative number has no real power with a fractional exponent")
    if a != 0 and b * math.log2(abs(a)) > 63:  # refused before computing it
        raise error("E0317", "number out of range", span,
                    f"values are limited to magnitude {MAX_INT}")
    try:
        return bounded(error, a ** b, span)
    except OverflowError:
        raise error("E0317", "number out of range", span,
                    f"values are limited to magnitude {MAX_INT}") from None


def bounded(error: Error, value, span):
    if abs(value) > MAX_INT or value != value:
        raise error("E0317", "number out of range", span,
                    f"values are limited to magnitude {MAX_INT}")
    return value


def _number(error: Error, name: str, v, span, allow_bool: bool = False):
    if is_number(v) or (allow_bool and isinstance(v, bool)):
        return v
    raise error("E0302", f"`{name}` takes a number, got {describe(v)}", span,
                "bool(...) and int(...) convert between booleans and numbers"
                if isinstance(v, bool) else None)


# how many arguments each numeric builtin takes: where a layer kind has the same name (`pow`),
# a call with numbers of another count is the layer (`x -> pow(2.0)`)
ARITY = {"int": (1, 1), "float": (1, 1), "bool": (1, 1), "abs": (1, 1), "floor": (1, 1),
         "ceil": (1, 1), "round": (1, 2), "log": (1, 2), "pow": (2, 2), "min": (1, 10 ** 6),
         "max": (1, 10 ** 6)}


def numeric_builtin(error: Error, name: str, args: list, spans: list, span):
    """The numeric builtins: int, float, bool, abs, round, floor, ceil, log, pow, min, max."""
    def arity(lo: int, hi: int, usage: str):
        if not lo <= len(args) <= hi:
            raise error("E0302", f"`{name}` takes {usage}, got {len(args)} argument"
                        f"{'s' if len(args) != 1 else ''}", span, f"write {name}({usage_example[name]})")

    usage_example = {"int": "x", "float": "x", "bool": "x", "abs": "x", "floor": "x",
                     "ceil": "x", "round": "x) or round(x, ndigits", "log": "x) or log(x, base",
                     "pow": "x, y", "min": "a, b, ...) or min([a, b, ...]",
                     "max": "a, b, ...) or max([a, b, ...]"}
    if name in ("min", "max"):
        return _min_max(error, name, args, spans, span, usage_example[name])
    if name in ("int", "float", "bool", "abs", "floor", "ceil"):
        arity(1, 1, "one argument")
        x = _number(error, name, args[0], spans[0], allow_bool=name in ("int", "float", "bool"))
        if name == "bool":
            return bool(x)
        if name == "float":
            return float(x)
        if name == "abs":
            return abs(x)
        if isinstance(x, float) and not math.isfinite(x):  # pragma: no cover - bounded values
            raise error("E0317", "number out of range", span)
        return bounded(error, {"int": int, "floor": math.floor, "ceil": math.ceil}[name](x), span)
    if name == "round":
        arity(1, 2, "one or two arguments")
        x = _number(error, name, args[0], spans[0])
        if len(args) == 1:
            return bounded(error, round(x), span)
        digits = args[1]
        if not isinstance(digits, int) or isinstance(digits, bool):
            raise error("E0302", f"`round`'s ndigits is an integer, got {describe(digits)}",
                        spans[1])
        return bounded(error, round(x, max(-400, min(400, digits))), span)
    if name == "pow":
        arity(2, 2, "two arguments")
        return power(error, _number(error, name, args[0], spans[0]),
                     _number(error, name, args[1], spans[1]), span)
    assert name == "log", name
    arity(1, 2, "one or two arguments")
    values = [_number(error, name, a, s) for a, s in zip(args, spans)]
    for v, s in zip(values, spans):
        if v <= 0:
            raise error("E0317", f"log is defined for positive numbers, got {v}", s)
    if len(values) == 2 and values[1] == 1:
        raise error("E0316", "division by zero: log to the base 1", spans[1])
    return math.log(*values)


def _min_max(error: Error, name: str, args: list, spans: list, span, usage: str):
    items, where = list(args), list(spans)
    if len(args) == 1 and isinstance(args[0], tuple):  # min([a, b]) as well as min(a, b)
        items, where = list(args[0]), [spans[0]] * len(args[0])
    elif len(args) == 1:
        raise error("E0302", f"`{name}` of one number", span, f"write {name}({usage})")
    if not items:
        raise error("E0302", f"`{name}` of nothing", span, f"write {name}({usage})")
    for v, s in zip(items, where):
        _number(error, name, v, s)
    return min(items) if name == "min" else max(items)
