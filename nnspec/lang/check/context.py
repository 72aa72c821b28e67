"""What every part of the checker shares: the program, the diagnostics, and the block call stack.

The stack holds the blocks being instantiated, each with the place it was called from, so that an
error deep inside a block also says where the block was used (`in `Stage`, used here`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.lang.diagnostics import Reporter, Span
from nnspec.lang.resolve import Program
from nnspec.lang.check.values import Abort


@dataclass(eq=False)
class Context:
    program: Program
    reporter: Reporter = field(default_factory=Reporter)
    stack: list[tuple[str, Span]] = field(default_factory=list)  # (block name, call site)

    def error(self, code: str, message: str, span: Span, help: str | None = None,
              notes: list | None = None) -> Abort:
        """Report an error with the call sites of the enclosing blocks; raise what it returns."""
        notes = list(notes or [])
        for name, where in reversed(self.stack):
            if not within(span, where):  # a note that repeats the error's own place is noise
                notes.append((f"in `{name}`, used here", where))
        self.reporter.error(code, message, span, help, notes[:6])
        return Abort()


def within(inner: Span | None, outer: Span) -> bool:
    """Whether `inner` lies inside `outer` (same file)."""
    return (inner is not None and inner.source is outer.source
            and (outer.line, outer.col) <= (inner.line, inner.col)
            and (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col))
