"""The TextMate grammar of .nn files (editors/vscode/syntaxes/nnspec.tmLanguage.json), built from
the language's own vocabulary so that it cannot miss a keyword or a layer kind.

`python scripts/editor_grammar.py` writes it; tests/editors checks that the file is up to date.
The regexes keep to what Oniguruma (TextMate, VS Code) and Python's `re` both read.
"""
from __future__ import annotations

import json

from nnspec.lang import vocabulary

SCOPE = "source.nnspec"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
INTERPOLATION = "punctuation.section.interpolation"
EXPONENT = r"(?:[eE][-+]?[0-9]+)"


def _words(words) -> str:
    """A regex matching any of `words` as a whole word (longest first: `input` before `in`)."""
    return r"\b(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + r")\b"


def textmate_grammar() -> dict:
    keywords = [w for w in vocabulary.keywords() if w not in vocabulary.CONSTANTS]
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "nnspec",
        "scopeName": SCOPE,
        "fileTypes": ["nn"],
        "patterns": [{"include": f"#{name}"} for name in (
            "comments", "strings", "definitions", "sections", "keywords", "numbers", "types",
            "kinds", "builtins", "arguments", "names", "operators", "punctuation")],
        "repository": {
            "comments": {"patterns": [{"name": "comment.line.number-sign.nnspec",
                                       "match": "#.*$"}]},
            "strings": {"patterns": [
                {"name": "string.quoted.double.interpolated.nnspec", "begin": r'\bf"',
                 "end": r'"|$', "patterns": [
                     {"include": "#escapes"},
                     {"name": "meta.interpolation.nnspec", "begin": r"\{", "end": r"\}",
                      "beginCaptures": {"0": {"name": f"{INTERPOLATION}.begin.nnspec"}},
                      "endCaptures": {"0": {"name": f"{INTERPOLATION}.end.nnspec"}},
                      "patterns": [{"include": "$self"}]}]},
                {"name": "string.quoted.double.nnspec", "begin": '"', "end": r'"|$',
                 "patterns": [{"include": "#escapes"}]}]},
            "escapes": {"patterns": [{"name": "constant.character.escape.nnspec",
                                      "match": r"\\."}]},
            # `model resnet18(...)`, `block BasicBlock(...)`, `const width = 64`
            "definitions": {"patterns": [{
                "match": rf"\b(model|block|const)\s+({IDENT})",
                "captures": {"1": {"name": "keyword.other.definition.nnspec"},
                             "2": {"name": "entity.name.type.nnspec"}}}]},
            # `train {`, `parallel {`: a section is a name before a brace, first on its line
            "sections": {"patterns": [{
                "match": rf"^\s*({_words(vocabulary.sections())})(?=\s*\{{)",
                "captures": {"1": {"name": "entity.name.section.nnspec"}}}]},
            "keywords": {"patterns": [
                {"name": "keyword.control.nnspec", "match": _words(keywords)},
                {"name": "constant.language.boolean.nnspec",
                 "match": _words(vocabulary.CONSTANTS)}]},
            "numbers": {"patterns": [{
                "name": "constant.numeric.nnspec",
                "match": rf"\b[0-9][0-9_]*\.[0-9_]*{EXPONENT}?|\b[0-9][0-9_]*{EXPONENT}"
                         rf"|(?<![A-Za-z0-9_])\.[0-9][0-9_]*{EXPONENT}?|\b[0-9][0-9_]*\b"}]},
            # `float[3, 32, 32]`: an element type is followed by its shape
            "types": {"patterns": [{"name": "storage.type.nnspec",
                                    "match": _words(vocabulary.dtypes()) + r"(?=\s*\[)"}]},
            "kinds": {"patterns": [{"name": "support.function.kind.nnspec",
                                    "match": _words(vocabulary.kinds())}]},
            "builtins": {"patterns": [{"name": "support.function.builtin.nnspec",
                                       "match": _words(vocabulary.builtins()) + r"(?=\s*\()"}]},
            # `stride=2` in a call (not `==`)
            "arguments": {"patterns": [{
                "match": rf"\b({IDENT})\s*(=)(?!=)",
                "captures": {"1": {"name": "variable.parameter.nnspec"},
                             "2": {"name": "keyword.operator.assignment.nnspec"}}}]},
            # `conv1: conv2d(...)`: the name a layer gets in the module
            "names": {"patterns": [{
                "match": rf"\b({IDENT})\s*(:)",
                "captures": {"1": {"name": "entity.name.tag.layer.nnspec"},
                             "2": {"name": "punctuation.separator.name.nnspec"}}}]},
            "operators": {"patterns": [
                {"name": "keyword.operator.arrow.nnspec", "match": "->"},
                {"name": "keyword.operator.nnspec",
                 "match": r"\*\*|//|==|!=|<=|>=|[-+*/%@<>=]"}]},
            "punctuation": {"patterns": [
                {"name": "punctuation.separator.nnspec", "match": "[,;]"},
                {"name": "punctuation.bracket.nnspec", "match": r"[()\[\]{}]"},
                {"name": "punctuation.accessor.nnspec", "match": r"\."}]},
        },
    }


def grammar_text() -> str:
    """The grammar file's text, as committed."""
    return json.dumps(textmate_grammar(), indent=2) + "\n"
