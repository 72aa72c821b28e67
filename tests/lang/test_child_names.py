"""A child's name must not clash with what torch's modules already are: a layer called `train`
was assigned as `self.train`, and forward then called Module.train (a silent miscompile)."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

import nnspec
from nnspec.ir.lower import MODULE_ATTRS


def test_module_attrs_cover_the_installed_torch():
    # in a fresh interpreter: other tests import libraries that patch nn.Module (deepspeed)
    out = subprocess.run([sys.executable, "-c", "import torch.nn as nn; print(sorted({n for c in "
                          "(nn.Module, nn.Sequential, nn.ModuleList) for n in dir(c) "
                          "if not n.startswith('_')}))"], capture_output=True, text=True,
                         check=True).stdout
    public = set(ast.literal_eval(out))
    assert public - MODULE_ATTRS == set(), "add these to nnspec.ir.lower.MODULE_ATTRS"
    assert "training" in MODULE_ATTRS   # an instance attribute, not in dir()


@pytest.mark.parametrize("name", ["train", "eval", "parameters", "cuda", "to", "append"])
@pytest.mark.parametrize("form", ["statement", "list item", "quoted"])
def test_a_layer_named_like_a_module_attribute_is_refused_where_it_is_written(name, form):
    line = {"statement": f"{name}: linear(4)", "list item": f"seq: [{name}: linear(4), relu]",
            "quoted": f'"{name}": linear(4)'}[form]
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(f"model m() {{\n  input x: float[4]\n  {line}\n}}\n")
    (diag,) = err.value.diagnostics
    assert diag.code == "E0209" and diag.span.line == 3 and "nn.Module" in str(err.value)
