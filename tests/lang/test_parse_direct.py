"""The direct parse (nnspec.lang.parse_direct, no Lark tree) gives the same syntax tree as the
tree path, spans included, on every .nn file in the repository, on tricky pieces of syntax and on
random specs; and on any input the tree path refuses it steps aside (returns None), so every
diagnostic still comes from the tree path."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from nnspec.lang.diagnostics import Source, Span, SpecError
from nnspec.lang import parse as P
from nnspec.lang.parse import MAX_NESTING, parse
from nnspec.lang.parse_direct import parse_direct
from nnspec.lang.to_syntax import to_syntax

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for d in ("specs", "tests", "docs") for p in (ROOT / d).rglob("*.nn"))


def _shape(node):
    """A node as nested tuples, spans included (syntax nodes leave spans out of ==)."""
    if isinstance(node, Span):
        return ("span", node.line, node.col, node.end_line, node.end_col)
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(_shape(getattr(node, f.name))
                                              for f in dataclasses.fields(node))
    if isinstance(node, (tuple, list)):
        return tuple(_shape(n) for n in node)
    return node


def _both(text: str):
    """(direct result, tree-path result or None when the tree path refuses the text); None for
    a text that `parse` refuses before either path runs."""
    text = text if text.endswith("\n") else text + "\n"
    source = Source("t.nn", text)
    try:
        for scan in (P._check_brackets, P._check_signs, P._check_statement_length):
            scan(source)
    except SpecError:
        return None
    direct = parse_direct(P._parser(), text, source, MAX_NESTING)
    try:
        tree = P._parser().parse(text)
        P._check_nesting(tree, source)
        syntax = to_syntax(tree, source)
    except Exception:  # noqa: BLE001 - any refusal of the tree path
        syntax = None
    return direct, syntax


def _agree(text: str) -> None:
    both = _both(text)
    if both is None:
        return
    direct, tree = both
    if tree is None:
        assert direct is None
    else:
        assert direct is not None
        assert _shape(direct) == _shape(tree)


def test_the_repository_has_specs_to_compare():
    assert len(FILES) > 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_file_parses_the_same(path):
    _agree(path.read_text(encoding="utf-8"))


PIECES = [
    "",
    "# only a comment",
    "model m {}",
    "block B() {\n}\nmodel m() { in x\n out x }",
    "model m { input x: float[4]\n  h = ((x))\n  out (h -> relu) + ((x) * 2) }",
    "const a = (1 + 2) * -(3) ** 2\nconst b = not true or 1 < 2 and [1, (2), [3]][0] == 1",
    "model m { input x: float[4]\n  f\"fc{1 + (2)}\": linear(4)\n  \"a b\": relu\n  model: relu }",
    "model m { input x: float[4]\n  y = x\n    -> linear(4)\n    when 1 > 0\n  out y }",
    "const c = [*[1, 2], *[3] when true, i * 2 for i in [1, 2]]",
    "const c = [i + j for i, j in [(1, 2), (3, 4)]]",
    "const d = 1 if 2 > 1 else 3 if false else 4",
    "model m(a = 1, b = (2),) { in x; out (x, x) }",
    "train {\n  lr = 1e-3\n  opt = adamw(lr=lr, betas=[0.9, 0.99],)\n}",
    "block A = linear(4) -> relu",
    "const e = a.b.c(1)[2](k=3)",
    "const f = +(1)",
    "use \"x.nn\"",
    # refused ones: the direct parse must step aside for each
    "model m { x -> }",
    "const a = 1e999",
    "const b = \"\\q\"",
    "model m { input x: float[4]\n  f\"a{1 +}\": relu }",
    "model m { in x\n + x }",
    "const deep = " + "x -> " * (MAX_NESTING + 2) + "x",
    "const deep = " + "not " * 60 + "true",
    "const wide = " + " + ".join(["1"] * 300),
]


@pytest.mark.parametrize("text", PIECES)
def test_pieces_parse_the_same(text):
    _agree(text)


def test_a_too_deep_flow_is_reported_by_the_tree_path():
    text = "model m { input x: float[4]\n y = x" + " -> relu" * (MAX_NESTING + 5) + "\n out y }"
    direct, _ = _both(text)
    assert direct is None
    with pytest.raises(SpecError) as err:
        parse(text)
    assert err.value.diagnostics[0].code == "E0107"


def test_a_flow_just_within_the_limit_takes_the_direct_path():
    text = "model m { input x: float[4]\n y = x" + " -> relu" * (MAX_NESTING - 10) + "\n out y }"
    direct, tree = _both(text)
    assert direct is not None and _shape(direct) == _shape(tree)


try:
    from tests.differential.specgen import specs
except ImportError:  # pragma: no cover - the differential package needs torch
    specs = None


@pytest.mark.skipif(specs is None, reason="tests/differential is not importable")
@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(g=specs() if specs is not None else None)
def test_random_specs_parse_the_same(g):
    for text in (g.text, g.helper):
        if text is not None:
            _agree(text)
