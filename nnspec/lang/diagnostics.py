"""Diagnostics: located, rendered errors that every pass reports through.

A pass collects `Diagnostic`s in a `Reporter` and raises `SpecError` at its end when any were
reported, so a user sees every error of that pass at once, rustc-style.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

MAX_ERRORS = 20  # a pass stops reporting after this many; the rest are counted

# ANSI styles on a terminal, as rustc colours its diagnostics
_STYLES = {"error": "1;31", "warning": "1;33", "message": "1", "gutter": "1;34", "caret": "1;31", "label": "1"}


def _paint(color: bool):
    """style(name, text): the text in that style when `color`, else the text as it is."""
    if not color:
        return lambda name, text: text
    return lambda name, text: f"\x1b[{_STYLES[name]}m{text}\x1b[0m" if text else text


def use_color(stream, choice: str = "auto", environ=None) -> bool:
    """Whether to colour diagnostics written to `stream`.

    `choice` is the --color flag: "always" and "never" win over the environment. With "auto" a
    non-empty NO_COLOR turns colour off (https://no-color.org), a FORCE_COLOR other than "",
    "0" or "false" turns it on, else only a terminal (not TERM=dumb) gets colour."""
    if choice != "auto":
        return choice == "always"
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR", "").lower() not in ("", "0", "false"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and env.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


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
    # a warning is printed beside a successful check and never stops a compile
    severity: str = "error"

    def render(self, color: bool = False) -> str:
        """rustc-style text; `color` adds ANSI styles (the text without them is unchanged)."""
        style = _paint(color)
        out = [style(self.severity, f"{self.severity}[{self.code}]")
               + style("message", f": {self.message}")]
        if self.span is not None:
            out += _render_span(self.span, style)
        for text, span in self.notes:
            out.append(style("label", "note:") + f" {text}")
            if span is not None:
                out += _render_span(span, style)
        if self.help:
            out.append(style("label", "help:") + f" {self.help}")
        return "\n".join(out)


def _render_span(span: Span, style) -> list[str]:
    text = span.source.line(span.line)
    gutter = " " * len(str(span.line))
    width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, width)
    # tabs keep their width so the caret lines up under the source text
    pad = "".join("\t" if ch == "\t" else " " for ch in text[: span.col - 1])
    bar = style("gutter", f"{gutter} |")
    return [
        style("gutter", f"{gutter}-->") + f" {span.source.name}:{span.line}:{span.col}",
        bar,
        style("gutter", f"{span.line} |") + f" {text}",
        f"{bar} {pad}{style('caret', '^' * width)}",
    ]


class SpecError(Exception):
    """Raised by a pass that reported errors; carries all of them."""

    def __init__(self, diagnostics: list[Diagnostic], dropped: int = 0):
        self.diagnostics = diagnostics
        self.dropped = dropped
        super().__init__(self.render())

    def render(self, color: bool = False) -> str:
        parts = [d.render(color) for d in self.diagnostics]
        n = len(self.diagnostics) + self.dropped
        if self.dropped:
            parts.append(f"... and {self.dropped} more")
        parts.append(_paint(color)("message", f"{n} error{'s' if n != 1 else ''} found"))
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
