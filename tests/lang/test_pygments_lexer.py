"""The Pygments lexer of .nn files: every shipped spec and every ```nn block of the docs lexes
without an error token, and keywords, names, comments and strings get their token types."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from nnspec.lang.pygments_lexer import NnspecLexer
from tests.docs.examples import doc_pages, fences, rule_of

ROOT = Path(__file__).resolve().parents[2]
SPECS = (sorted((ROOT / "specs").rglob("*.nn"))
         + sorted((ROOT / "tests" / "golden" / "valid").glob("*.nn")))


def tokens(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in NnspecLexer().get_tokens(text) if v.strip()]


def test_the_shipped_specs_lex_without_errors():
    assert len(SPECS) > 20
    for path in SPECS:
        text = path.read_text(encoding="utf-8")
        found = list(NnspecLexer().get_tokens(text))
        errors = [v for t, v in found if t in Error]
        assert not errors, f"{path.relative_to(ROOT)}: {errors[:5]}"
        assert "".join(v for _, v in found).rstrip("\n") == text.rstrip("\n")


def test_the_docs_nn_blocks_lex_without_errors():
    blocks = [f for page in doc_pages() for f in fences(page)
              if f.tag == "nn" and rule_of(f) != "expect"]
    assert len(blocks) > 20
    for fence in blocks:
        errors = [v for t, v in NnspecLexer().get_tokens(fence.text) if t in Error]
        assert not errors, f"{fence.where}: {errors[:5]}"


@pytest.mark.parametrize("text, expected", [
    ('use "blocks/resnet.nn"  # blocks', [(Keyword, "use"), (String.Double, "blocks/resnet.nn"),
                                         (Comment.Single, "# blocks")]),
    ("model net(width = 64) {", [(Keyword.Declaration, "model"), (Name.Class, "net"),
                                 (Name.Attribute, "width"), (Number.Integer, "64")]),
    ("block Res(c) = conv2d(c, 3)", [(Keyword.Declaration, "block"), (Name.Class, "Res"),
                                     (Name.Builtin, "conv2d")]),
    ("const eps = 1e-5", [(Keyword.Declaration, "const"), (Name.Constant, "eps"),
                          (Number.Float, "1e-5")]),
    ("  input x: float[3, 32, 32]", [(Keyword, "input"), (Name.Label, "x"),
                                     (Keyword.Type, "float")]),
    ("  y = x -> fc: linear(10, bias=false) when depth > 2",
     [(Operator, "->"), (Name.Label, "fc"), (Name.Builtin, "linear"), (Name.Attribute, "bias"),
      (Keyword.Constant, "false"), (Keyword, "when")]),
    ('  [f"layer{i + 1}": block_of(c) for i in range(4)]',
     [(String.Interpol, "{"), (Name, "i"), (String.Interpol, "}"), (Keyword, "for"),
      (Keyword, "in")]),
    ("  out relu(h + s) if channels(x) == 8 else h",
     [(Keyword, "out"), (Name.Builtin, "relu"), (Keyword, "if"), (Name.Builtin, "channels"),
      (Operator, "=="), (Keyword, "else")]),
    ("train {\n  lr = 0.1\n}", [(Name.Namespace, "train"), (Name.Attribute, "lr"),
                                (Number.Float, "0.1")]),
])
def test_token_types(text, expected):
    found = tokens(text)
    for kind, value in expected:
        assert (kind, value) in found, (kind, value, found)


def test_names_that_start_like_keywords_are_names():
    found = tokens("  inputs_x = model_in -> blocker")
    assert not [v for t, v in found if t in Keyword], found


def test_the_lexer_is_registered_for_pygments():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["pygments.lexers"]["nnspec"]
    module, name = target.split(":")
    assert getattr(importlib.import_module(module), name) is NnspecLexer
    assert {"nn", "nnspec"} <= set(NnspecLexer.aliases) and NnspecLexer.filenames == ["*.nn"]
