"""Constant arithmetic computes what Python computes: for random numbers, each operator, builtin and
conditional expression of a spec equals Python's `eval` of the same text (or both refuse it:
Python raises where the spec reports a located error)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from nnspec.lang.check import const_values
from nnspec.lang.diagnostics import SpecError
from nnspec.lang.resolve import resolve_text

MAX_INT = 2 ** 62


def spec_value(expr: str):
    """The value of `const r = EXPR` as the checker computes it (SpecError if it refuses)."""
    return const_values(resolve_text(f"const r = {expr}\n"))["r"]


def spec_error(expr: str) -> tuple[str, str, int]:
    with pytest.raises(SpecError) as err:
        spec_value(expr)
    d = err.value.diagnostics[0]
    return d.code, d.message, d.span.col


def lit(v) -> str:
    """A spec literal for `v` (negative numbers in parentheses, so `-` binds as in Python)."""
    text = repr(v)
    return f"({text})" if text.startswith("-") else text


def py_value(expr: str):
    """Python's value of the same text, or None where Python raises or leaves the reals."""
    env = {"true": True, "false": False, "log": math.log, "floor": math.floor, "ceil": math.ceil}
    try:
        v = eval(expr, env)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None
    if isinstance(v, complex) or (isinstance(v, (int, float)) and not isinstance(v, bool) and
                                  (v != v or abs(v) > MAX_INT)):
        return None
    return v


def agree(expr: str):
    want = py_value(expr)
    if want is None:
        code, _, _ = spec_error(expr)
        assert code in ("E0316", "E0317"), expr
        return
    got = spec_value(expr)
    assert type(got) is type(want) and (got == want or (got != got and want != want)), \
        (expr, got, want)


ints = st.integers(-10 ** 6, 10 ** 6)
small_ints = st.integers(-40, 40)
floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
numbers = st.one_of(ints, floats)


@settings(max_examples=300, deadline=None)
@given(numbers, numbers, st.sampled_from(["+", "-", "*", "/", "//", "%", "<", ">=", "==", "!="]))
def test_binary_operators_equal_pythons(a, b, op):
    agree(f"{lit(a)} {op} {lit(b)}")


@settings(max_examples=300, deadline=None)
@given(st.one_of(small_ints, st.floats(-50, 50, allow_nan=False)), st.one_of(
    small_ints, st.floats(-8, 8, allow_nan=False)))
def test_power_equals_pythons(a, b):
    agree(f"{lit(a)} ** {lit(b)}")
    agree(f"pow({lit(a)}, {lit(b)})")


@settings(max_examples=200, deadline=None)
@given(small_ints, small_ints, small_ints, st.sampled_from(["+", "-", "*", "//", "%", "**"]),
       st.sampled_from(["", "-"]))
def test_precedence_of_mixed_operators_equals_pythons(a, b, c, op, sign):
    # `-a ** b op c`: a sign binds looser than `**` on its left, every operator by Python's table
    # (`**` is right-associative: `a ** b ** c` keeps c small so Python's own eval stays quick)
    agree(f"{sign}{abs(a)} ** {abs(b) % 5} {op} {lit(c if op != '**' else c % 3)}")
    agree(f"{lit(a)} {op} {abs(b)} ** {abs(c) % 4}")


@settings(max_examples=300, deadline=None)
@given(floats, st.integers(-4, 6))
def test_round_is_bankers_rounding_like_pythons(x, digits):
    agree(f"round({lit(x)})")
    agree(f"round({lit(x)}, {lit(digits)})")
    agree(f"round({lit(x * 2 // 1 / 2)})")  # exact halves: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2


@settings(max_examples=200, deadline=None)
@given(numbers, st.sampled_from(["int", "float", "bool", "abs", "floor", "ceil"]))
def test_conversions_and_rounding_functions_equal_pythons(x, name):
    agree(f"{name}({lit(x)})")


@settings(max_examples=200, deadline=None)
@given(st.floats(-5, 1e6, allow_nan=False), st.one_of(st.none(), st.floats(-3, 100, allow_nan=False)))
def test_log_equals_pythons(x, base):
    agree(f"log({lit(x)})" if base is None else f"log({lit(x)}, {lit(base)})")


@settings(max_examples=200, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=5), st.sampled_from(["min", "max"]))
def test_min_max_of_several_arguments_or_a_list(xs, name):
    args = ", ".join(lit(x) for x in xs)
    if len(xs) > 1:  # one number alone is refused, as Python refuses min(3)
        agree(f"{name}({args})")
    agree(f"{name}([{args}])")


@settings(max_examples=200, deadline=None)
@given(numbers, numbers, ints, ints)
def test_conditional_expression_equals_pythons(a, b, c, d):
    agree(f"{lit(a)} if {lit(c)} < {lit(d)} else {lit(b)}")
    agree(f"{lit(a)} if {lit(c)} < 0 else {lit(b)} if {lit(d)} < 0 else {lit(c)}")
    agree(f"{lit(c)} + 1 if {lit(c)} > 0 or {lit(d)} > 0 else {lit(d)}")  # `or` binds tighter


def test_bool_int_conversions():
    assert spec_value("int(true)") == 1 and spec_value("int(false)") == 0
    assert spec_value("bool(0)") is False and spec_value("bool(-2.5)") is True
    assert spec_value("int(true) + int(2 > 1)") == 2
    assert spec_value("float(true)") == 1.0


def test_make_divisible_as_mobilenet_v3_writes_it():
    """torchvision's `_make_divisible(v, 8)`, as one constant expression per width."""
    def make_divisible(v, divisor=8):
        new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
        if new_v < 0.9 * v:
            new_v += divisor
        return new_v

    for v in (3, 16 * 0.75, 24 * 1.25, 37.5, 72 * 0.35, 100, 960 * 0.1, 1280 * 1.5):
        expr = (f"max(8, int({v} + 4) // 8 * 8) + 8 if max(8, int({v} + 4) // 8 * 8) < 0.9 * {v} "
                f"else max(8, int({v} + 4) // 8 * 8)")
        assert spec_value(expr) == make_divisible(v), v


def test_floor_division_and_modulo_of_negatives_round_down():
    assert [spec_value(e) for e in ("-7 // 2", "7 // -2", "-7 % 3", "7 % -3", "-7.5 // 2", "-7.5 % 2")] \
        == [-4, -4, 2, -2, -4.0, 0.5]


@pytest.mark.parametrize("expr, code, col", [
    ("1 // 0", "E0316", 16), ("3 % 0.0", "E0316", 15), ("2 / (1 - 1)", "E0316", 16),
    ("0 ** -1", "E0316", 11), ("log(1, 1)", "E0316", 18), ("log(0)", "E0317", 15),
    ("(-8) ** 0.5", "E0317", 11), ("10 ** 10 ** 9", "E0317", 11), ("2 ** 63", "E0317", 11),
    ("round(1.5, 2.0)", "E0302", 22), ("abs(true)", "E0302", 15), ("min()", "E0302", 11),
    ("min([])", "E0302", 11), ("max(3)", "E0302", 11), ("true + 1", "E0314", 11), ("int(1, 2)", "E0302", 11),
])
def test_refused_arithmetic_is_located(expr, code, col):
    got = spec_error(expr)
    assert (got[0], got[2]) == (code, col), got


def test_help_names_the_conversion():
    with pytest.raises(SpecError) as err:
        spec_value("true + 1")
    assert "int(...)" in err.value.diagnostics[0].help


def test_only_the_picked_branch_is_evaluated():
    assert spec_value("1 if true else 1 // 0") == 1
    assert spec_value("1 // 0 if false else 2") == 2


def test_pow_is_the_function_on_numbers_and_the_layer_on_tensors():
    """`pow` is a numeric builtin and a layer kind: the arguments decide which."""
    import torch

    import nnspec

    spec = nnspec.loads("model m() {\n  input x: float[4]\n"
                        "  out x -> pow(2.0), pow(x, 3.0) + pow(2, 3), x * x -> pow(other=0.5)\n}\n")
    x = torch.randn(2, 4)
    a, b, c = spec.build()(x)
    torch.testing.assert_close(a, x ** 2)
    torch.testing.assert_close(b, x ** 3 + 8)
    torch.testing.assert_close(c, (x * x) ** 0.5)
