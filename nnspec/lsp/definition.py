"""Go to definition: of a block, model or constant name (its `block` line, in this document or
a file it includes), and of a `use "file"` path (that file).

Definitions come from resolve, which has read every included file. While the document does not
resolve (a typo in a `use`, a syntax error being typed), the document's own definitions are
still found, by their lines' text.
"""
from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types as lsp

from nnspec.lang.diagnostics import Span
from nnspec.lang.resolve import Program
from nnspec.lsp.analysis import Analysis
from nnspec.lsp.positions import contains, line_range

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFINES = re.compile(r"^[ \t]*(?:block|model|const)[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)

Target = tuple[Path | None, lsp.Range]  # a file (None: this document) and where in it


def definition(analysis: Analysis, line: int, col: int) -> list[Target]:
    """Where the name or `use` path at the 1-based (line, col) is defined; [] when nowhere."""
    for use in analysis.uses:
        if contains(use.span, line, col):
            target = analysis.use_target(use)
            return [(target, line_range(0))] if target is not None and target.is_file() else []
    name = word_at(analysis.text, line, col)
    if name is None:
        return []
    span = _defined(analysis.program, name)
    if span is not None:
        return [(analysis.file_of(span), _name_range(span, name))]
    for m in DEFINES.finditer(analysis.text):  # the document as typed, while it does not resolve
        if m.group(1) == name:
            row = analysis.text.count("\n", 0, m.start(1))
            start = m.start(1) - (analysis.text.rfind("\n", 0, m.start(1)) + 1)
            return [(analysis.path, line_range(row, start, start + len(name)))]
    span = _defined(analysis.scope, name)  # a block of an included file, as last resolved
    if span is not None and analysis.file_of(span) != analysis.path:
        return [(analysis.file_of(span), _name_range(span, name))]
    return []


def word_at(text: str, line: int, col: int) -> str | None:
    """The identifier under (or just before) the 1-based (line, col), or None."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    for m in WORD.finditer(lines[line - 1]):
        if m.start() <= col - 1 <= m.end():
            return m.group()
    return None


def _defined(program: Program | None, name: str) -> Span | None:
    if program is None:
        return None
    found = program.definitions.get(name) or program.consts.get(name)
    return None if found is None else found.span


def _name_range(span: Span, name: str) -> lsp.Range:
    """The name on a definition's first line (`block NAME(...)`), else where the span starts."""
    text = span.source.line(span.line)
    m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text[span.col - 1:])
    if m is None:
        return line_range(span.line - 1, span.col - 1)
    start = span.col - 1 + m.start()
    return line_range(span.line - 1, start, start + len(name))
