"""The TextMate grammar of editors/vscode: up to date with the language, readable by Python's
`re` (the regex subset TextMate's Oniguruma shares), and colouring real specs as expected."""
from __future__ import annotations

import json
import re
from pathlib import Path

import lark
import pytest

from nnspec.lang.textmate import grammar_text
from nnspec.layers import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_FILE = ROOT / "editors" / "vscode" / "syntaxes" / "nnspec.tmLanguage.json"
GRAMMAR = json.loads(GRAMMAR_FILE.read_text(encoding="utf-8"))
REPO = GRAMMAR["repository"]


def grammar_keywords() -> set[str]:
    """The keywords of nnspec.lark, read by lark itself: every terminal that is a plain word,
    and the words a terminal's regex matches whole (`when(?![A-Za-z0-9_])`)."""
    parser = lark.Lark((ROOT / "nnspec" / "lang" / "nnspec.lark").read_text(), parser="lalr")
    found = set()
    for t in parser.terminals:
        value = t.pattern.value
        if t.pattern.type == "str" and value.isalpha():
            found.add(value)
        elif t.pattern.type == "re":
            found.update(re.findall(r"([a-z]+)\(\?!\[A-Za-z0-9_\]\)", value))
    return found


def test_the_grammar_file_is_up_to_date():
    assert GRAMMAR_FILE.read_text(encoding="utf-8") == grammar_text(), \
        "run: python scripts/editor_grammar.py"


def test_every_keyword_of_the_language_is_in_the_keyword_pattern():
    keywords = grammar_keywords()
    assert {"model", "block", "use", "when", "in", "input", "out", "for", "true"} <= keywords
    patterns = [p["match"] for p in REPO["keywords"]["patterns"]]
    missing = [k for k in sorted(keywords) if not any(re.fullmatch(p, k) for p in patterns)]
    assert not missing, f"keywords the grammar does not colour: {missing}"


def test_every_layer_kind_is_coloured_as_a_kind():
    [pattern] = [p["match"] for p in REPO["kinds"]["patterns"]]
    missing = [k for k in REGISTRY.builtin() if not re.fullmatch(pattern, k)]
    assert not missing, f"run: python scripts/editor_grammar.py (missing {missing})"


def _regexes(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end") and isinstance(value, str):
                yield value
            else:
                yield from _regexes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regexes(item)


def test_every_regex_compiles_under_python_re():
    found = list(_regexes(GRAMMAR))
    assert len(found) > 15
    for pattern in found:
        re.compile(pattern)


def _scopes(line: str) -> list[tuple[str, str]]:
    """(text, scope) for each token the grammar's top-level patterns find on one line, the way a
    TextMate engine picks them: the earliest match wins, ties go to the first pattern."""
    rules = [rule for inc in GRAMMAR["patterns"] for rule in REPO[inc["include"][1:]]["patterns"]]
    out, pos = [], 0
    while pos < len(line):
        best = None
        for rule in rules:
            m = re.compile(rule.get("match") or rule["begin"]).search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, rule)
        if best is None:
            break
        m, rule = best
        if "begin" in rule:  # a string: to its end on this line
            end = re.compile(rule["end"]).search(line, m.end())
            stop = end.end() if end else len(line)
            out.append((line[m.start():stop], rule["name"]))
            pos = stop
            continue
        if "captures" in rule:
            out += [(m.group(int(i)), c["name"]) for i, c in rule["captures"].items()
                    if m.group(int(i))]
        else:
            out.append((m.group(), rule["name"]))
        pos = m.end()
    return out


@pytest.mark.parametrize("line, expected", [
    ('use "blocks/resnet.nn"  # the blocks', [("use", "keyword.control"),
                                              ('"blocks/resnet.nn"', "string.quoted.double"),
                                              ("# the blocks", "comment.line")]),
    ("model resnet18(num_classes = 1000) {", [("model", "keyword.other.definition"),
                                             ("resnet18", "entity.name.type"),
                                             ("num_classes", "variable.parameter"),
                                             ("1000", "constant.numeric")]),
    ("  input x: float[3, size, size]", [("input", "keyword.control"),
                                        ("x", "entity.name.tag"), ("float", "storage.type")]),
    ("  h = x -> conv1: conv2d(64, 7, stride=2, bias=false) when depth > 1.5e-3",
     [("->", "keyword.operator.arrow"), ("conv1", "entity.name.tag"),
      ("conv2d", "support.function.kind"), ("stride", "variable.parameter"),
      ("false", "constant.language"), ("when", "keyword.control"), ("1.5e-3", "constant.numeric")]),
    ('  blocks: [f"layer{i + 1}": Block(c) for i in range(n)]',
     [('f"layer{i + 1}"', "string.quoted.double.interpolated"), ("for", "keyword.control"),
      ("in", "keyword.control")]),
    ("train {", [("train", "entity.name.section")]),
    ("  out relu(h + s) if channels(x) == 3 else h", [("out", "keyword.control"),
                                                      ("relu", "support.function.kind"),
                                                      ("if", "keyword.control"),
                                                      ("channels", "support.function.builtin"),
                                                      ("else", "keyword.control")]),
])
def test_lines_get_the_expected_scopes(line, expected):
    found = _scopes(line)
    for text, scope in expected:
        assert any(t == text and s.startswith(scope) for t, s in found), (text, scope, found)


def test_a_keyword_inside_a_name_is_not_a_keyword():
    found = _scopes("  inputs_used = model_out -> blocker")
    assert not any(s.startswith("keyword.control") for _, s in found), found
