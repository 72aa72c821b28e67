"""Model parameters given from Python behave as the same values written in the spec: a list passed
to `nnspec.load` can be indexed, enumerated and passed on to blocks (the regnet spec's `depths[i]`
failed with "cannot index a list" when the differential tests shrank it)."""
import pytest

import nnspec
from nnspec.lang.diagnostics import SpecError

SPEC = """
block Stack(width, depth) = [linear(width) for j in range(depth)]

model m(widths = [8, 4], depths = [1, 2]) {
  input x: float[6]
  body: [Stack(w, depths[i]) for i, w in enumerate(widths)]
}
"""


def _keys(spec) -> list[str]:
    return list(spec.build().state_dict())


@pytest.mark.parametrize("depths", [[2, 1], (2, 1)])
def test_a_list_from_python_indexes_like_one_in_the_spec(depths):
    written = nnspec.loads(SPEC.replace("depths = [1, 2]", "depths = [2, 1]"))
    given = nnspec.loads(SPEC, depths=depths)
    assert _keys(given) == _keys(written) == [
        "body.0.0.weight", "body.0.0.bias", "body.0.1.weight", "body.0.1.bias",
        "body.1.0.weight", "body.1.0.bias"]


def test_nested_lists_from_python_are_lists_too():
    spec = nnspec.loads(SPEC.replace("depths[i]", "depths[i][0]"), depths=[[1], [2]])
    assert len(_keys(spec)) == 6


def test_an_index_out_of_range_in_a_list_from_python_is_located():
    with pytest.raises(SpecError) as err:
        nnspec.loads(SPEC, depths=[1])
    assert "E0313" in str(err.value) and "out of range" in str(err.value)


SPEC_CLI = """
model m(widths = [4, 6], depths = [[1], [2, 3]]) {
  input x: float[3]
  a: linear(widths[1] + depths[1][1])
  b: [linear(w) for w in widths]
}
"""


def test_a_python_override_gives_what_the_command_line_gives():
    from nnspec.lang.sections import parse_set

    from_python = nnspec.loads(SPEC_CLI, widths=[8, 16], depths=((1,), [2, 5]))
    from_cli = nnspec.loads(SPEC_CLI, **parse_set(["widths=[8, 16]", "depths=[[1], [2, 5]]"]))
    assert from_python.source == from_cli.source
    assert from_python.summary() == from_cli.summary()

