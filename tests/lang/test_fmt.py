"""`nnspec fmt`: idempotent, keeps every comment, and never changes what a spec means.

"What a spec means" is compared as the checked result of the spec before and after formatting:
the generated model.py (the emitted form of the checked IR, every layer, shape and argument) with
its pointers to spec lines blanked, plus the DeepSpeed config (the train and parallel sections);
for a spec that does not check, the codes and messages of its diagnostics. The corpus: every
shipped spec, every golden fixture, and random specs of the differential generator.
"""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import nnspec
from nnspec.lang.diagnostics import SpecError
from nnspec.lang.fmt import format_text
from nnspec.lang.fmt_comments import scan_comments
from nnspec.lang import fmt_expr
from nnspec.lang.fmt_expr import WIDTH

from tests.differential.specgen import HELPER, specs

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["specs", "tests/golden/valid", "tests/golden/invalid"]
CORPUS = sorted(p for f in FOLDERS for p in (ROOT / f).rglob("*.nn"))


def formats(text: str) -> str | None:
    """The formatted text, or None for a file that does not parse (it must not format either)."""
    try:
        return format_text(text, "spec.nn")
    except SpecError:
        return None


def comment_texts(text: str) -> list[str]:
    return [c.text for c in scan_comments(text)]


def assert_formatted_well(text: str) -> str | None:
    once = formats(text)
    if once is None:
        return None
    assert format_text(once) == once, "not idempotent"
    missing = [c for c in comment_texts(text) if c not in once]
    assert not missing, f"comments lost: {missing}"
    return once


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_idempotent_and_keeps_comments(path: Path):
    assert_formatted_well(path.read_text(encoding="utf-8"))


def meaning(path: Path, root: Path):
    """What checking the spec gives, with file locations taken out."""
    try:
        spec = nnspec.load(path, max_params=10**13)
    except SpecError as err:
        return [(d.code, d.message.replace(f"{root}/", "")) for d in err.diagnostics]
    return (code_of(spec.source), json.dumps(spec.deepspeed_config(), sort_keys=True))


def code_of(source: str) -> str:
    """model.py as code: its syntax tree without docstrings (comments are gone already). The
    spec-line pointers and the file's path live in comments and docstrings, and the emitter
    fits lines to 100 columns around them, so the text itself moves with the path's length."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@pytest.fixture(scope="module")
def formatted_tree(tmp_path_factory) -> Path:
    """A copy of the corpus folders (includes beside them) with every file formatted."""
    dest = tmp_path_factory.mktemp("formatted")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, dest / folder)
    for path in dest.rglob("*.nn"):
        text = formats(path.read_text(encoding="utf-8"))
        if text is not None:
            path.write_text(text, encoding="utf-8")
    return dest


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_formatting_keeps_the_checked_result(path: Path, formatted_tree: Path):
    rel = path.relative_to(ROOT)
    assert meaning(formatted_tree / rel, formatted_tree) == meaning(path, ROOT)


def with_comments_everywhere(text: str) -> str:
    """`text` with a comment on a line of its own before every line, and one at the end of every
    line that has none (not after a `\\` that continues a line)."""
    out = []
    for i, line in enumerate(text.split("\n")):
        if line.rstrip().endswith("\\"):
            out.append(line)
            continue
        out.append(f"# own {i}")
        out.append(line + (f"  # end {i}" if line.strip() and "#" not in line else ""))
    return "\n".join(out)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_comments_everywhere_survive(path: Path):
    assert_formatted_well(with_comments_everywhere(path.read_text(encoding="utf-8")))


MEANT = [p for p in CORPUS if "invalid" not in p.parts]


def test_comments_everywhere_keep_the_checked_result(tmp_path):
    for folder in FOLDERS[:2]:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for path in MEANT:
        target = tmp_path / path.relative_to(ROOT)
        target.write_text(formats(with_comments_everywhere(path.read_text(encoding="utf-8"))),
                          encoding="utf-8")
    for path in MEANT:
        target = tmp_path / path.relative_to(ROOT)
        assert meaning(target, tmp_path) == meaning(path, ROOT), path


def test_narrow_lines_keep_the_checked_result(tmp_path, monkeypatch):
    """At 40 columns nearly every flow, call, list and operator chain breaks: each way of
    breaking must still parse to the same spec (comments everywhere too)."""
    monkeypatch.setattr(fmt_expr, "WIDTH", 40)
    for folder in FOLDERS[:2]:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for path in MEANT:
        text = assert_formatted_well(with_comments_everywhere(path.read_text(encoding="utf-8")))
        (tmp_path / path.relative_to(ROOT)).write_text(text, encoding="utf-8")
    for path in MEANT:
        assert meaning(tmp_path / path.relative_to(ROOT), tmp_path) == meaning(path, ROOT), path


def test_random_specs(tmp_path, monkeypatch):
    """~200 random specs of the differential generator: idempotent, and the same checked
    result once formatted (helper files formatted too); every second one at 40 columns."""
    seen: set[tuple] = set()

    @settings(max_examples=240, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(specs())
    def one(generated):
        key = (generated.text, generated.helper)
        if key in seen:
            return
        seen.add(key)
        monkeypatch.setattr(fmt_expr, "WIDTH", 40 if len(seen) % 2 else 100)
        before, after = tmp_path / "before", tmp_path / "after"
        for folder in (before, after):
            shutil.rmtree(folder, ignore_errors=True)
        path = generated.write(before)
        generated.write(after)
        for name in ("spec.nn", HELPER):
            if (before / name).exists():
                text = assert_formatted_well((before / name).read_text(encoding="utf-8"))
                assert text is not None, generated.show()
                (after / name).write_text(text, encoding="utf-8")
        assert meaning(after / path.name, after) == meaning(path, before), generated.show()

    one()
    assert len(seen) >= 150


# ---- the layout -----------------------------------------------------------------------------
def test_canonical_spacing_and_indentation():
    text = ('model m(a=1,b = 2){\n'
            '    input x:float[ 3,a ]\n'
            '    y=x->fc:linear( b*2 ,bias = false)->relu;out y\n'
            '}\n')
    assert format_text(text) == ('model m(a = 1, b = 2) {\n'
                                 '  input x: float[3, a]\n'
                                 '  y = x -> fc: linear(b * 2, bias=false) -> relu\n'
                                 '  out y\n'
                                 '}\n')


def test_literals_keep_their_written_form():
    text = 'const A = 1e-5\nconst B = 1_000\nconst C = "a\\"b"\nconst D = .5\nconst E = 0.00001\n'
    assert format_text(text) == text


@pytest.mark.parametrize("source, expected", [
    ("(a + b) * c", "(a + b) * c"),
    ("a + (b * c)", "a + b * c"),
    ("(a - b) - c", "a - b - c"),
    ("a - (b - c)", "a - (b - c)"),
    ("(-2) ** 2", "(-2) ** 2"),
    ("-(2 ** 2)", "-2 ** 2"),
    ("(2 ** 3) ** 2", "(2 ** 3) ** 2"),
    ("2 ** (3 ** 2)", "2 ** 3 ** 2"),
    ("(a if b else c) + 1", "(a if b else c) + 1"),
    ("a if (b if c else d) else e", "a if (b if c else d) else e"),
    ("(not a) and b", "not a and b"),
    ("not (a and b)", "not (a and b)"),
    ("f((x -> relu), k=(1))", "f(x -> relu, k=1)"),
])
def test_parentheses_only_where_precedence_needs_them(source: str, expected: str):
    assert format_text(f"const X = {source}\n") == f"const X = {expected}\n"


def test_a_statement_starting_with_a_sign_keeps_its_parentheses():
    text = "model m {\n  input x: float[3]\n  (-x) -> relu\n}\n"
    assert format_text(text) == text


def test_long_flows_and_lists_break_within_the_width():
    stages = " -> ".join(f"fc{i}: linear({i + 1})" for i in range(12))
    items = ", ".join(f"linear({i + 1})" for i in range(15))
    text = f"model m {{\n  input x: float[3]\n  y = x -> {stages}\n  z = y -> [{items}]\n  out z\n}}\n"
    out = format_text(text)
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    assert "\n        -> fc" in out        # continuation lines under the first arrow
    assert "  z = y -> [\n    linear(1),\n    linear(2),\n" in out  # one layer a line
    assert format_text(out) == out


def test_comments_stay_where_they_were():
    text = ("# header\n"
            "\n"
            "model m {  # trailing the header\n"
            "  input x: float[3]\n"
            "  # before a statement\n"
            "  y = x -> a: linear(4)  # after a stage\n"
            "    -> relu\n"
            "  z = [linear(4),  # after an item\n"
            "       relu]\n"
            "  out z  # after a statement\n"
            "  # at the end of the body\n"
            "}\n"
            "# at the end of the file\n")
    out = format_text(text)
    assert out == ("# header\n"
                   "\n"
                   "model m {  # trailing the header\n"
                   "  input x: float[3]\n"
                   "  # before a statement\n"
                   "  y = x -> a: linear(4)  # after a stage\n"
                   "        -> relu\n"
                   "  z = [\n"
                   "    linear(4),  # after an item\n"
                   "    relu\n"
                   "  ]\n"
                   "  out z  # after a statement\n"
                   "  # at the end of the body\n"
                   "}\n"
                   "# at the end of the file\n")
    assert format_text(out) == out


def test_trailing_comments_keep_their_alignment():
    text = ("model m {\n"
            "  input x: float[3]\n"
            "  fc: linear(4)        # [B, 4]\n"
            "  act: relu            # [B, 4]\n"
            "  head: linear(2) # [B, 2]\n"
            "}\n")
    assert format_text(text) == text.replace(") # [B, 2]", ")  # [B, 2]")


def test_blank_lines_kept_at_most_one():
    text = "const A = 1\n\n\n\nconst B = 2\nconst C = 3\n"
    assert format_text(text) == "const A = 1\n\nconst B = 2\nconst C = 3\n"


def test_a_hash_inside_a_string_is_not_a_comment():
    text = 'const A = "#not a comment"  # a comment\n'
    assert format_text(text) == text
    assert comment_texts(text) == ["# a comment"]


def test_a_file_that_does_not_parse_raises_a_located_error():
    with pytest.raises(SpecError) as err:
        format_text("model m {\n  x = (1 +\n}\n", "bad.nn")
    assert "bad.nn:" in str(err.value)
