"""Where things are: nnspec spans (1-based lines and columns, in characters, end exclusive) as
LSP ranges (0-based). The server converts them to the client's units (UTF-16 by default) with
the document's position codec; these stay in characters, as Python indexes a line."""
from __future__ import annotations

from lsprotocol import types as lsp

from nnspec.lang.diagnostics import Span


def span_range(span: Span) -> lsp.Range:
    return lsp.Range(lsp.Position(span.line - 1, span.col - 1),
                     lsp.Position(span.end_line - 1, max(0, span.end_col - 1)))


def line_range(line: int, start: int = 0, end: int | None = None) -> lsp.Range:
    """A range on one 0-based line, from `start` to `end` (default: the start)."""
    return lsp.Range(lsp.Position(line, start), lsp.Position(line, start if end is None else end))


def contains(span: Span, line: int, col: int) -> bool:
    """Whether the 1-based (line, col) lies in the span; its end counts, so that a cursor just
    after the last character of `conv2d(...)` still points at it."""
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def extent(span: Span) -> tuple[int, int]:
    """A size to order nested spans by: lines first, then characters."""
    return span.end_line - span.line, span.end_col - span.col
