"""Child names in the source: f-string names (`f"denselayer{i + 1}": ...`) split into text and
`{expression}` holes, and the diagnostic for a would-be name that is not an identifier.

Each hole is parsed with the grammar's `test` rule at the hole's own line and column
(`hole_source`), so a diagnostic inside a hole points into the f-string.
"""
from __future__ import annotations

import ast
import warnings
from functools import lru_cache
from importlib import resources
from typing import Callable

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, VisitError

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Diagnostic, Source, Span


class NameSyntaxError(Exception):
    """A malformed f-string name, as the diagnostic to report."""

    def __init__(self, diag: Diagnostic):
        self.diag = diag


@lru_cache(maxsize=1)
def _hole_parser() -> Lark:
    """The grammar's `test` rule alone. A hole is one line (a string token holds no line break),
    so it needs none of the whole-file parser's handling of new lines."""
    grammar = resources.files("nnspec.lang").joinpath("nnspec.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", start="test", propagate_positions=True,
                maybe_placeholders=True)


def fstring(tok: Token, source: Source, transform: Callable[[Tree], S.Node]) -> S.FString:
    """`f"layer{i + 1}"` as its text parts and parsed holes; `transform` is the transformer
    that turns the parsed tree of a hole into syntax nodes (its errors pass through as they are)."""
    try:
        parts = split_fstring(str(tok))
    except FStringError as err:
        col = tok.column + err.offset
        raise NameSyntaxError(Diagnostic("E0105", str(err), Span(source, tok.line, col, tok.line,
                                                                 col + 1), err.help)) from None
    out: list = []
    for text, offset, hole in parts:
        if not hole:
            out.append(text)
            continue
        col = tok.column + offset
        try:
            tree = _hole_parser().parse(hole_source(text, tok.line, col))
        except UnexpectedInput:
            raise NameSyntaxError(Diagnostic(
                "E0105", f"`{text}` is not an expression",
                Span(source, tok.line, col, tok.line, col + len(text)),
                "an f-string hole holds a constant expression, e.g. {i + 1}")) from None
        try:
            out.append(transform(tree))
        except VisitError as err:  # Lark wraps what the transformer raised (a literal's error)
            raise err.orig_exc from None
    return S.FString(Span(source, tok.line, tok.column, tok.end_line, tok.end_column), tuple(out))


class FStringError(ValueError):
    """A malformed f-string: `message` and the offset in the token it is about."""

    def __init__(self, message: str, offset: int, help: str):
        super().__init__(message)
        self.offset, self.help = offset, help


def split_fstring(token: str) -> list[tuple[str, int, bool]]:
    """`f"a{i}b"` -> [("a", 2, False), ("i", 4, True), ("b", 6, False)]: each part, its offset in
    the token, and whether it is a hole. `{{` and `}}` are literal braces, as in Python."""
    body, start = token[2:-1], 2
    parts: list[tuple[str, int, bool]] = []
    text, text_at, i = "", start, 0
    while i < len(body):
        ch = body[i]
        if body.startswith("{{", i) or body.startswith("}}", i):
            text, i = text + ch, i + 2
        elif ch == "}":
            raise FStringError("single `}` in an f-string", start + i, "write `}}` for a brace")
        elif ch == "{":
            end = body.find("}", i)
            hole = body[i + 1:end] if end >= 0 else ""
            if end < 0 or "{" in hole:
                raise FStringError("unclosed `{` in an f-string", start + i,
                                   "close the expression with `}`; write `{{` for a brace")
            if not hole.strip() or "\\" in hole:
                raise FStringError("an f-string hole holds one expression", start + i,
                                   "write an expression between the braces, e.g. {i + 1}")
            if text:
                parts.append((_unescape(text, text_at), text_at, False))
            parts.append((hole, start + i + 1, True))
            text, i, text_at = "", end + 1, start + end + 1
        else:
            if ch == "\\":  # keep an escape whole: `\{` is not a hole
                text, i = text + body[i:i + 2], i + 2
                continue
            text, i = text + ch, i + 1
    if text:
        parts.append((_unescape(text, text_at), text_at, False))
    return parts


def _unescape(text: str, offset: int) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = ast.literal_eval('"' + text + '"')
    except (ValueError, SyntaxError, Warning):
        raise FStringError("invalid escape in string", offset,
                           'use \\\\ for a backslash and \\" for a quote') from None
    return value


def hole_source(hole: str, line: int, col: int) -> str:
    """Text that the `test` rule parses to the hole's expression with the positions it has in the
    file: line breaks the grammar ignores (`\\` + newline), then spaces, then `(hole)`."""
    return "\\\n" * (line - 1) + " " * (col - 2) + "(" + hole + ")"


_NAME_PIECES = {"NAME", "INT", "FLOAT", "ADD_OP", "MUL_OP", "DOT"}


def not_a_name(before: list[Token], colon: Token, source: Source) -> Diagnostic | None:
    """`block1-0: ...` reads as `block1 - 0` and then meets `:`; say that names are identifiers
    and show the quoted form (torchvision's RegNet names children this way). `before` are the
    tokens before the colon."""
    pieces: list[Token] = []
    for t in reversed(before):
        if t.type not in _NAME_PIECES:
            break
        pieces.insert(0, t)
    if len(pieces) < 2 or pieces[0].type != "NAME" or pieces[-1].end_pos != colon.start_pos:
        return None
    if any(a.end_pos != b.start_pos for a, b in zip(pieces, pieces[1:])):
        return None  # `a - b:` with spaces is an expression, not a would-be name
    text = source.text[pieces[0].start_pos:pieces[-1].end_pos]
    line, col = pieces[0].line, pieces[0].column
    return Diagnostic("E0103", f"`{text}` is not a name", Span(source, line, col, line,
                                                               col + len(text)),
                      f'names are identifiers (letters, digits and `_`); quote any other name: '
                      f'`"{text}": ...`')
