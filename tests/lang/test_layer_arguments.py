"""A rule that spans several arguments of a layer kind (a model-level validator) is reported
against the layer, in the validator's words; it used to read "invalid `` for rotary"."""
from __future__ import annotations

import pytest

import nnspec


def test_a_rule_over_several_arguments_names_the_layer_not_an_empty_argument():
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads("model m() {\n  input x: float[5, 6]\n"
                     '  out x -> rotary(6, scaling="llama3", low_freq_factor=4.0, '
                     "high_freq_factor=1.0)\n}\n")
    (diag,) = err.value.diagnostics
    assert diag.code == "E0329" and (diag.span.line, diag.span.col) == (3, 12)
    assert diag.message == ("invalid arguments for rotary: llama3 scaling needs "
                            "high_freq_factor > low_freq_factor")


def test_a_layer_named_like_a_kind_says_it_hides_the_kind():
    """`dropout: dropout(0.1)` then `dropout(0.2)`: the second is the named layer, called again."""
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads("model m() {\n  input x: float[4]\n  dropout: dropout(0.1)\n"
                     "  h = x -> dropout(0.2)\n  out h\n}\n")
    (diag,) = err.value.diagnostics
    assert diag.code == "E0302" and diag.span.line == 4
    assert "hides the layer kind `dropout`" in diag.help
