"""f-string names (`f"denselayer{i + 1}": ...`): the token split into text and `{expression}` holes.

Only the splitting lives here; parse.py parses each hole with the grammar's `test` rule, at the
hole's own line and column, so a diagnostic inside a hole points into the f-string.
"""
from __future__ import annotations

import ast
import warnings


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
