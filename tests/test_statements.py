"""Statement rules of issue 9, defect 2: a line starting with `+`/`-` is refused (E0108) rather than
read as a statement of its own, and an expression statement whose tensor nothing reads is an error
(E0333). The exact diagnostics are golden fixtures (statement_starts_with_sign,
unused_expression_statement*); here: the forms that must keep working, and what they compute."""
from __future__ import annotations

import pytest
import torch

import nnspec
from nnspec.lang.diagnostics import SpecError


def _codes(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        nnspec.loads(text)
    return [d.code for d in err.value.diagnostics]


@pytest.mark.parametrize("body", [
    "  y = ((x -> relu)\n      + x)\n  out y",               # inside parentheses
    "  y = (x -> relu) \\\n      + x\n  out y",              # an explicit line join
    "  y = sum_of(x -> relu,\n      - x)\n  out y",
])
def test_multi_line_expressions_that_continue(body):
    text = "block sum_of() {\n  in a, b\n  out a + b\n}\n" if "sum_of" in body else ""
    spec = nnspec.loads(text + "model m() {\n  input x: float[4]\n" + body + "\n}\n")
    x = torch.randn(2, 4)
    want = torch.relu(x) + (-x if "- x" in body else x)
    torch.testing.assert_close(spec.build()(x), want)


@pytest.mark.parametrize("line", ["+ x", "- x", "-x -> relu", "; - x"])
def test_a_statement_starting_with_a_sign_is_refused(line):
    assert _codes(f"model m() {{\n  input x: float[4]\n  y = x -> relu\n  {line}\n  out y\n}}\n") \
        == ["E0108"]


def test_without_out_the_stray_line_no_longer_becomes_the_output():
    assert _codes("model m() {\n  input x: float[4]\n  y = x -> relu\n      - x\n}\n") == ["E0108"]


def test_signs_inside_expressions_still_work():
    spec = nnspec.loads("model m() {\n  input x: float[4]\n  y = -x\n  out y * -1 + x - (-x)\n}\n")
    x = torch.randn(2, 4)
    torch.testing.assert_close(spec.build()(x), 3 * x)


def test_every_unused_statement_is_reported():
    codes = _codes("model m() {\n  input x: float[4]\n  x -> relu\n  h = x -> tanh\n"
                   "  x -> linear(3)\n  out h\n}\n")
    assert codes == ["E0333", "E0333"]


@pytest.mark.parametrize("body", [
    "  relu\n  linear(3)",                    # each statement feeds the next; the last is out
    "  x -> relu -> linear(4)\n  sigmoid",
    "  h = x -> relu\n  h -> tanh\n  linear(3)",
])
def test_statements_that_feed_the_next_are_used(body):
    nnspec.loads("model m() {\n  input x: float[4]\n" + body + "\n}\n")


@pytest.mark.parametrize("body", [
    "  relu\n  out x",                        # `out` names the input, not relu's result
    "  x -> relu\n  h = x -> tanh\n  out h",  # the next statement starts again from x
    "  h = x -> tanh\n  h -> relu\n  out h",
])
def test_statements_nothing_reads_are_errors(body):
    assert _codes("model m() {\n  input x: float[4]\n" + body + "\n}\n") == ["E0333"]


def test_a_value_read_only_for_its_shape_counts_as_used():
    nnspec.loads("model m() {\n  input x: float[4]\n  h = x -> linear(6)\n"
                 "  out x -> linear(channels(h))\n}\n")
