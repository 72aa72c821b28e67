"""A Pygments lexer for .nn specs: the docs highlight ```nn blocks with it, and so does anything
else that uses Pygments (`pygmentize -l nn specs/resnet18.nn`).

Registered through the entry point `pygments.lexers: nnspec` (pyproject.toml) under the aliases
`nn` and `nnspec`. The keywords come from the grammar and the layer kinds from the registry
(lang/vocabulary.py), as the editors' TextMate grammar's do. Torch-free.
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from nnspec.lang import vocabulary

__all__ = ["NnspecLexer"]  # how Pygments finds the class in a module it is told about

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_KEYWORDS = tuple(w for w in vocabulary.keywords() if w not in vocabulary.CONSTANTS
                  and w not in ("model", "block", "const"))


class NnspecLexer(RegexLexer):
    """The .nn spec language of nnspec."""

    name = "nnspec"
    aliases = ["nn", "nnspec"]
    filenames = ["*.nn"]
    mimetypes = ["text/x-nnspec"]
    url = "https://github.com/nnspec/nnspec"

    tokens = {
        "root": [
            include("expression"),
        ],
        "expression": [
            (r"[ \t\r\n]+", Whitespace),
            (r"\\\r?\n", Text),                       # a line continued with a backslash
            (r"#.*?$", Comment.Single),
            (r'f"', String.Double, "fstring"),
            (r'"', String.Double, "string"),
            (rf"\b(model|block)(\s+)({IDENT})", bygroups(Keyword.Declaration, Whitespace,
                                                          Name.Class)),
            (rf"\b(const)(\s+)({IDENT})", bygroups(Keyword.Declaration, Whitespace,
                                                    Name.Constant)),
            (words(vocabulary.sections(), prefix=r"\b", suffix=r"(?=\s*\{)"),
             Name.Namespace),
            (words(_KEYWORDS, prefix=r"\b", suffix=r"\b"), Keyword),
            (words(vocabulary.CONSTANTS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (r"([0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)([eE][-+]?[0-9]+)?", Number.Float),
            (r"[0-9][0-9_]*[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9][0-9_]*", Number.Integer),
            (words(vocabulary.dtypes(), prefix=r"\b", suffix=r"(?=\s*\[)"), Keyword.Type),
            (words(vocabulary.kinds(), prefix=r"\b", suffix=r"\b"), Name.Builtin),
            (words(vocabulary.builtins(), prefix=r"\b", suffix=r"(?=\s*\()"), Name.Builtin),
            (rf"{IDENT}(?=\s*=(?!=))", Name.Attribute),   # stride=2
            (rf"{IDENT}(?=\s*:)", Name.Label),            # conv1: conv2d(...)
            (IDENT, Name),
            (r"->", Operator),
            (r"\*\*|//|==|!=|<=|>=|[-+*/%@<>=]", Operator),
            (r"[()\[\]{},;:.]", Punctuation),
        ],
        "string": [
            (r'[^"\\\n]+', String.Double),
            (r"\\.", String.Escape),
            (r'"', String.Double, "#pop"),
            (r"\n", Whitespace, "#pop"),              # unterminated: the parser reports it
        ],
        "fstring": [
            (r'[^"\\{\n]+', String.Double),
            (r"\\.", String.Escape),
            (r"\{", String.Interpol, "interpolation"),
            (r'"', String.Double, "#pop"),
            (r"\n", Whitespace, "#pop"),
        ],
        "interpolation": [
            (r"\}", String.Interpol, "#pop"),
            include("expression"),
        ],
    }
