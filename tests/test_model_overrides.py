"""Model parameters overridden from Python (`nnspec.load(..., widths=[8, 16])`) are the values a
spec would have written: a Python list is indexed, enumerated and shown as a list written in the
spec is, and gives the same model as `--set widths=[8, 16]`."""
from __future__ import annotations

import nnspec
from nnspec.lang.sections import parse_set

SPEC = """
model m(widths = [4, 6], depths = [[1], [2, 3]]) {
  input x: float[3]
  a: linear(widths[1] + depths[1][1])
  b: [linear(w) for w in widths]
}
"""


def test_a_python_list_override_indexes_like_a_spec_list():
    spec = nnspec.loads(SPEC, widths=[8, 16], depths=[[1], [2, 5]])
    state = spec.build().state_dict()
    assert state["a.weight"].shape == (21, 3)
    assert [state[f"b.{i}.weight"].shape[0] for i in range(2)] == [8, 16]


def test_a_python_override_gives_what_the_command_line_gives():
    from_python = nnspec.loads(SPEC, widths=[8, 16], depths=((1,), [2, 5]))
    from_cli = nnspec.loads(SPEC, **parse_set(["widths=[8, 16]", "depths=[[1], [2, 5]]"]))
    assert from_python.source == from_cli.source
    assert from_python.summary() == from_cli.summary()
