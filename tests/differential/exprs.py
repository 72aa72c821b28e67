"""Constant expressions for the spec generator: an integer written with the language's arithmetic
(`**`, `//`, `%`, `a if c else b`, round, int, bool, log, pow, min, max, abs, floor, ceil), so
that every argument the generator writes this way checks that the checker computes what Python
does. Each form is built from its value backwards (`value == text` is asserted here with
Python's own eval of the same text), and the construct it exercises is named for `drawn`.
"""
from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from .recipes import Draw, Expr

# construct name -> what it covers
ARITH_CONSTRUCTS = frozenset({"ifelse_arg", "ifelse_param", "power", "floordiv_mod", "round",
                              "bool_int", "log_pow", "min_max_list", "abs_floor_ceil",
                              "power_tensor", "layer_default_param", "chain_repeat", "ifelse_layer"})


def _forms(draw: Draw, v: int) -> list[tuple[str, str]]:
    """(text, construct) pairs that each evaluate to the integer `v` in Python and in a spec."""
    k = draw(st.integers(2, 5))
    r = draw(st.integers(0, k - 1))
    m = draw(st.integers(1, 3))
    frac = draw(st.sampled_from([0.25, 0.4, 0.49]))
    other = draw(st.integers(-9, 9))
    a = draw(st.integers(1, 4))
    return [
        (f"{v} if {other} < {other + m} else {other}", "ifelse_arg"),
        (f"{other} if {other} >= {other + m} else {v}", "ifelse_arg"),
        (f"{a} ** 2 - {a * a - v}" if a * a >= v else f"{a} ** 2 + {v - a * a}", "power"),
        (f"-{k} ** 2 + {v + k * k}", "power"),  # the sign binds looser than `**`
        (f"({v * k + r}) // {k}", "floordiv_mod"),
        (f"-(-{v * k + r} // {k}) - {1 if r else 0}", "floordiv_mod"),  # floor of a negative
        (f"{v} + (-{r}) % {k} - {(-r) % k}", "floordiv_mod"),
        (f"round({v} + {frac})", "round"), (f"round({v} - {frac})", "round"),
        (f"round({2 * v + 1} / 2) - {v % 2}", "round"),  # an exact half rounds to even
        (f"int(round({v * 100 + 1} / 100, 1))", "round"),
        (f"{v} * int(true) + int({other} > {other + 1})", "bool_int"),
        (f"{v - 1} + int(bool({other * other + 1}))", "bool_int"),
        (f"int(log({2 ** v}, 2) + 0.5)" if 0 <= v <= 20 else f"pow({v}, 1)", "log_pow"),
        (f"pow({v}, 1)", "log_pow"),
        (f"int(pow(2, {m}) / {2 ** m} * {v})", "log_pow"),
        (f"max([{v - m}, {v}, {v - 2 * m}])", "min_max_list"),
        (f"min({v + m}, {v}, {v + 2 * m})", "min_max_list"),
        (f"abs({-v})", "abs_floor_ceil"), (f"floor({v} + {frac})", "abs_floor_ceil"),
        (f"ceil({v} - {frac})", "abs_floor_ceil"),
    ]


def arith_text(draw: Draw, value: int) -> tuple[str, str]:
    """`value` written as one of the arithmetic forms: (text, construct)."""
    text, construct = draw(st.sampled_from(_forms(draw, value)))
    env = {"true": True, "false": False, "log": math.log, "floor": math.floor, "ceil": math.ceil}
    assert eval(text, env) == value and type(eval(text, env)) is int, (text, value)  # noqa: S307
    return f"({text})", construct


def param_ifelse(draw: Draw, value: int, params: dict[str, str]) -> tuple[Expr, str] | None:
    """`(value if p > k else other)` on an int parameter, or `value * int(flag) + ...` on a bool
    one: an argument whose value follows the block's or model's binding."""
    ints = [p for p, kind in params.items() if kind == "int"]
    flags = [p for p, kind in params.items() if kind == "bool"]
    if not ints and not flags:
        return None
    other = draw(st.integers(1, 6))
    if ints and (not flags or draw(st.booleans())):
        p, k = draw(st.sampled_from(ints)), draw(st.integers(0, 6))
        return Expr(f"({value} if {p} > {k} else {other})",
                    lambda bind, p=p, k=k: value if bind[p] > k else other), "ifelse_param"
    p = draw(st.sampled_from(flags))
    return Expr(f"({value} * int({p}) + {other} * int(not {p}))",
                lambda bind, p=p: value if bind[p] else other), "bool_int"


def constant_text(draw: Draw, value: Any) -> tuple[str, str] | None:
    """A top-level constant's text for an integer value, sometimes written with arithmetic."""
    if isinstance(value, int) and not isinstance(value, bool) and draw(st.integers(0, 2)) == 0:
        return arith_text(draw, value)
    return None
