"""The LALR tables shipped in nnspec/lang/lalr_tables.py are those of today's grammar and parser
options, and a parser loaded from them parses exactly as one built from the grammar does."""
from __future__ import annotations

import importlib.util

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

from nnspec.lang import lark_tables, parse
from nnspec.lang.lark_tables import cached_lark, tables_key

from ..conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("parser_tables_script",
                                                  ROOT / "scripts" / "parser_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def requested():
    return _script().requested()


def test_tables_are_current():
    assert _script().current(), ("nnspec/lang/lalr_tables.py is out of date: run "
                                 "python scripts/parser_tables.py")


def test_current_tables_are_loaded_not_built(requested, monkeypatch):
    grammar, options = requested

    def refuse(*args, **kwargs):
        raise AssertionError("built the LALR tables instead of loading them")

    monkeypatch.setattr(Lark, "__init__", refuse)
    assert isinstance(cached_lark(grammar, **options), Lark)


SOURCES = sorted([*ROOT.glob("specs/**/*.nn"), *ROOT.glob("tests/golden/valid/*.nn"),
                  *ROOT.glob("tests/golden/invalid/*.nn")])


def test_loaded_parser_parses_as_the_built_one(requested):
    grammar, options = requested
    loaded, built = cached_lark(grammar, **options), Lark(grammar, **options)
    assert len(SOURCES) > 100
    for path in SOURCES:
        text = path.read_text(encoding="utf-8", errors="replace") + "\n"
        outcomes = []
        for parser in (loaded, built):
            try:
                outcomes.append(parser.parse(text))
            except UnexpectedInput as err:  # the same error, at the same place, expecting the same
                outcomes.append((type(err), err.line, err.column,
                                 sorted(getattr(err, "expected", None) or ())))
            except parse._SignStart as err:  # the post-lexer's own refusal
                outcomes.append((type(err), err.tok.line, err.tok.column))
        assert outcomes[0] == outcomes[1], path


def test_key_follows_what_shapes_the_tables(requested):
    grammar, options = requested
    key = tables_key(grammar, options)
    assert tables_key(grammar + "\n", options) != key
    assert tables_key(grammar, {**options, "maybe_placeholders": False}) != key
    assert tables_key(grammar, {**options, "lexer_callbacks": {"COMMENT": print}}) != key

    class Accepting(parse._BracketNewlines):
        always_accept = ("COMMENT",)

    assert tables_key(grammar, {**options, "postlex": Accepting()}) != key
    assert tables_key(grammar, {**options, "postlex": parse._BracketNewlines()}) == key


def test_other_grammars_are_built(monkeypatch):
    """Tables for another grammar are never used: that parser is built from its text."""
    parser = cached_lark('start: "a"+\n', parser="lalr")
    assert parser.parse("aaa").data == "start"
    monkeypatch.setattr(lark_tables, "tables_key", lambda grammar, options: "stale")
    assert cached_lark('start: "b"\n', parser="lalr").parse("b").data == "start"
