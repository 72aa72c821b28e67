"""Diagnostics: located, rendered errors that every pass reports through.

A pass collects `Diagnostic`s in a `Reporter` and raises `SpecError` at its end when any were
reported, so a user sees every error of that pass at once, rustc-style.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

MAX_ERRORS = 20  # a pass stops reporting after this many; the rest are counted


@dataclass(frozen=True)
class Source:
    """The text of one .nn file and the name it is shown under."""

    name: str
    text: str

    def line(self, lineno: int) -> str:
        # lines end at \n alone, as the parser counts them (splitlines() also breaks at \f, \x1c...)
        lines = self.text.split("\n")
        return lines[lineno - 1].rstrip("\r") if 0 < lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source: 1-based line/column of its start and its end (exclusive)."""

    source: Source
    line: int
    col: int
    end_line: int
    end_col: int

    def __repr__(self) -> str:  # keeps IR dumps short
        return f"{self.source.name}:{self.line}:{self.col}"


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    notes: list[tuple[str, Span | None]] = field(default_factory=list)

    def render(self) -> str:
        out = [f"error[{self.code}]: {self.message}"]
        if self.span is not None:
            out += _render_span(self.span)
        for text, span in self.notes:
            out.append(f"note: {text}")
            if span is not None:
                out += _render_span(span)
        if self.help:
            out.append(f"help: {self.help}")
        return "\n".join(out)


def _render_span(span: Span) -> list[str]:
    text = span.source.line(span.line)
    gutter = " " * len(str(span.line))
    width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, width)
    # tabs keep their width so the caret lines up under the source text
    pad = "".join("\t" if ch == "\t" else " " for ch in text[: span.col - 1])
    return [
        f"{gutter}--> {span.source.name}:{span.line}:{span.col}",
        f"{gutter} |",
        f"{span.line} | {text}",
        f"{gutter} | {pad}{'^' * width}",
    ]


class SpecError(Exception):
    """Raised by a pass that reported errors; carries all of them."""

    def __init__(self, diagnostics: list[Diagnostic], dropped: int = 0):
        self.diagnostics = diagnostics
        self.dropped = dropped
        super().__init__(self.render())

    def render(self) -> str:
        parts = [d.render() for d in self.diagnostics]
        n = len(self.diagnostics) + self.dropped
        if self.dropped:
            parts.append(f"... and {self.dropped} more")
        parts.append(f"{n} error{'s' if n != 1 else ''} found")
        return "\n\n".join(parts)


class Reporter:
    """Collects a pass's diagnostics; `check()` raises them together."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.dropped = 0

    def error(self, code: str, message: str, span: Span | None = None, help: str | None = None,
              notes: list[tuple[str, Span | None]] | None = None) -> Diagnostic:
        diag = Diagnostic(code, message, span, help, notes or [])
        if len(self.diagnostics) < MAX_ERRORS:
            self.diagnostics.append(diag)
        else:
            self.dropped += 1
        return diag

    def extend(self, err: SpecError) -> None:
        for d in err.diagnostics:
            self.error(d.code, d.message, d.span, d.help, d.notes)
        self.dropped += err.dropped

    def __bool__(self) -> bool:
        return bool(self.diagnostics)

    def check(self) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics, self.dropped)


def did_you_mean(name: str, candidates, what: str = "") -> str | None:
    """A 'did you mean' hint from the closest candidate names, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


def display_path(path: Path) -> str:
    """A path as a user typed it relative to the working directory, when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
