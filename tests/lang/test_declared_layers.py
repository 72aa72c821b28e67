"""`const name = layer` declares a layer: it is built where the flow first applies it and shared
where applied again, but takes its place among the module's children (and so in state_dict and
the generated __init__) at the declaration, as PyTorch orders modules by their assignment."""
from __future__ import annotations

import pytest
import torch

import nnspec

MERGE = """
block Merge(c) {
  in x
  const reduction = linear(2 * c, bias=false)
  x -> norm: layernorm -> reduction
}
model m {
  input x: float[5, 8]
  h = x -> first: Merge(4) -> second: Merge(4)
  out h -> head: linear(3)
}
"""


def test_a_declared_layer_comes_first_in_state_dict_and_init():
    spec = nnspec.loads(MERGE)
    model = spec.build()
    assert list(model.state_dict())[:3] == ["first.reduction.weight", "first.norm.weight",
                                             "first.norm.bias"]
    source = spec.source
    assert source.index("self.reduction = nn.Linear(8, 8") < source.index("self.norm = nn.LayerNorm")
    from tests.differential.harness import check_spec
    assert check_spec(spec)["outputs"][0] < 1e-10


def test_a_declared_layer_applied_again_shares_its_weights():
    spec = nnspec.loads("""
model m {
  input x: float[8]
  const shared = linear(8)
  a = x -> relu
  out (a -> shared) + (x -> shared)
}""")
    model = spec.build()
    assert [n for n, _ in model.named_children()] == ["shared"]
    assert spec.summary()["params"] == 8 * 8 + 8
    x = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), model.shared(x.relu()) + model.shared(x))


def test_declarations_keep_their_order_whatever_order_they_run_in():
    spec = nnspec.loads("""
model m {
  input x: float[8]
  const a = linear(8)
  const b = linear(8)
  h = x -> first: linear(8) -> b -> a
  out h -> last: linear(2)
}""")
    assert [n for n, _ in spec.build().named_children()] == ["a", "b", "first", "last"]


@pytest.mark.parametrize("body, code, message", [
    ("const unused = linear(4)\n  out x -> relu", "E0334",
     "the layer `unused` is declared but never applied"),
    ("fc: linear(8)\n  const fc = linear(4)\n  out x -> fc", "E0205",
     "`fc` already names a layer in this block"),
])
def test_declaration_errors(body, code, message):
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(f"model m {{\n  input x: float[8]\n  {body}\n}}", name="t.nn")
    assert str(err.value).startswith(f"error[{code}]: {message}"), str(err.value)
    assert " --> t.nn:" in str(err.value)
