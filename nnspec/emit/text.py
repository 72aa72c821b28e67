"""User text (names of files, block signatures with their string arguments) inside generated
comments and docstrings.

Such text is data: it must never end the comment or docstring it stands in, and so never become
code. A comment ends at a line break, a docstring at `\"\"\"` (or a stray backslash that escapes
its closing quote); so line breaks and every other unprintable character are written as escapes
(`\\n`, `\\u2028`), and in a docstring backslashes and double quotes are escaped as well, so that
the docstring's value holds the user's text exactly.
"""
from __future__ import annotations


def _escaped(ch: str) -> str:
    """An unprintable character as its Python escape (`\\n`, `\\x85`, `\\u2028`)."""
    return repr(ch)[1:-1]


def comment_text(text: str) -> str:
    """`text` for a `#` comment: one physical line, printable characters only."""
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def doc_text(text: str) -> str:
    """`text` for the inside of a `\"\"\"` docstring whose value is `text` itself."""
    out = []
    for ch in text:
        if ch in "\\\"":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(_escaped(ch))
    return "".join(out)
