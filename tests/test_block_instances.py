"""Every call of a block is its own module (issue 9, defect 1).

A block called twice with identical arguments used to be compiled to one module object used
twice: `__init__` made `self.a` and `self.b`, but `forward` called `self.b` both times. These tests
compute what the spec means by hand from the state_dict and compare, and check that the passes
that tell modules apart by identity (lower, pipeline, summary) see two modules.
"""
from __future__ import annotations

import pytest
import torch

import nnspec
from nnspec.ir import Leaf, ModuleDef, Op, Value, verify_identities
from nnspec.layers import T
from nnspec.place.partition import units_of

TWICE = """
block Lin(n) {
  in x
  out x -> fc: linear(n)
}
model m() {
  input x: float[4]
  y = x -> a: Lin(4)
  z = y -> b: Lin(4)
  out z + y
}
"""


def _random_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return state


def test_two_identical_calls_compute_two_layers():
    model = nnspec.loads(TWICE).build().double().eval()
    w = {k: v.double() for k, v in _random_weights(model).items()}
    x = torch.randn(3, 4, dtype=torch.float64)
    a = x @ w["a.fc.weight"].T + w["a.fc.bias"]
    b = a @ w["b.fc.weight"].T + w["b.fc.bias"]
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, b + a, rtol=1e-12, atol=1e-12)


def test_identical_calls_share_one_class_but_not_one_module():
    spec = nnspec.loads(TWICE)
    a, b = (c for _, c in spec.ir.children)
    assert a is not b and a.signature == b.signature
    assert spec.source.count("class Lin(") == 1
    assert "y = self.a(x)" in spec.source and "z = self.b(y)" in spec.source


def test_pipeline_and_summary_see_two_modules():
    spec = nnspec.loads(TWICE)
    assert [u.path for u in units_of(spec.ir).units if u.path] == ["a.fc", "b.fc"]
    names = [row["name"] for row in spec.summary()["layers"]]
    assert "a.fc" in names and "b.fc" in names


def test_repeat_and_nested_calls_are_distinct_instances():
    spec = nnspec.loads("""
block Inner(n) {
  in x
  out x -> fc: linear(n) -> relu
}
block Outer(n) {
  in x
  h = x -> p: Inner(n)
  out h -> q: Inner(n)
}
model m() {
  input x: float[4]
  out x -> o1: Outer(4) -> o2: Outer(4) -> rep: Inner(4) * 3
}
""")
    verify_identities(spec.ir)
    model = spec.build().double().eval()
    w = {k: v.double() for k, v in _random_weights(model).items()}
    x = torch.randn(2, 4, dtype=torch.float64)
    h = x
    for path in ["o1.p", "o1.q", "o2.p", "o2.q", "rep.0", "rep.1", "rep.2"]:
        h = torch.relu(h @ w[f"{path}.fc.weight"].T + w[f"{path}.fc.bias"])
    with torch.no_grad():
        torch.testing.assert_close(model(x), h, rtol=1e-12, atol=1e-12)
    paths = [u.path for u in units_of(spec.ir).units if u.path]
    assert paths == ["o1.p.fc", "o1.q.fc", "o2.p.fc", "o2.q.fc", "rep.0", "rep.1", "rep.2"]


def test_reusing_a_named_block_still_shares_it():
    spec = nnspec.loads("""
block Lin(n) {
  in x
  out x -> fc: linear(n)
}
model m() {
  input x: float[4]
  y = x -> a: Lin(4)
  out y -> a
}
""")
    assert len(spec.ir.children) == 1
    assert sum(p.numel() for p in spec.build().parameters()) == 20


def test_the_invariant_is_checked():
    leaf = Leaf(nnspec.layers.REGISTRY["relu"](), [T((4,))], None)
    x = Value(T((4,)), "x")
    y, z = Value(T((4,)), "y"), Value(T((4,)), "z")
    root = ModuleDef("m", "m()", None, children=[("a", leaf)], inputs=[x], input_names=["x"],
                     outputs=[z], ops=[Op(leaf, leaf.layer, [x], {}, [y], None),
                                       Op(leaf, leaf.layer, [y], {}, [z], None)])
    with pytest.raises(AssertionError, match="called twice"):
        verify_identities(root)
    root.ops[1].reuse = True
    verify_identities(root)
    root.children.append(("b", leaf))
    with pytest.raises(AssertionError, match="a child twice"):
        verify_identities(root)
