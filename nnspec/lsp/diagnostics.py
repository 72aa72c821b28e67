"""nnspec's diagnostics as LSP diagnostics: the span as the range, the severity (error or
warning), the code (E0203), the message with its help line, and the notes as related locations
(a note with no place, as a line of the message).

An error inside an included file is shown on the `use` line that brings the file in (the
editor shows the open document's problems) and names where it is; its related location
opens the file at the error."""
from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp

from nnspec.lang.diagnostics import Diagnostic, Span
from nnspec.lsp.analysis import Analysis
from nnspec.lsp.positions import line_range, span_range

SOURCE = "nnspec"
_ERROR = lsp.DiagnosticSeverity.Error
# Diagnostic.severity -> the editor's: a warning (printed beside `ok`) is underlined, not an error
SEVERITY = {"error": _ERROR, "warning": lsp.DiagnosticSeverity.Warning}


def lsp_diagnostics(analysis: Analysis) -> list[lsp.Diagnostic]:
    """Every diagnostic of the analysis, located in the document (ranges in characters)."""
    return [_convert(d, analysis) for d in analysis.diagnostics]


def _convert(d: Diagnostic, analysis: Analysis) -> lsp.Diagnostic:
    # a note without a place has nowhere to go but the message (W0713's list of the layers
    # kept whole), in the order `nnspec check` prints it: notes, then help
    lines = [d.message] + [f"note: {text}" for text, span in d.notes if span is None]
    message = "\n".join(lines + ([f"help: {d.help}"] if d.help else []))
    related = [lsp.DiagnosticRelatedInformation(_location(span, analysis), text)
               for text, span in d.notes if span is not None and _location(span, analysis)]
    if d.span is None:
        where = line_range(0)
    elif d.span.source.name == analysis.name:
        where = span_range(d.span)
    else:
        where = _use_line(analysis, analysis.file_of(d.span))
        message = f"{d.span.source.name}:{d.span.line}:{d.span.col}: {message}"
        inside = _location(d.span, analysis)
        if inside is not None:
            related.insert(0, lsp.DiagnosticRelatedInformation(inside, f"the {d.severity} is here"))
    return lsp.Diagnostic(where, message, severity=SEVERITY.get(d.severity, _ERROR), code=d.code,
                          source=SOURCE, related_information=related or None)


def _location(span: Span, analysis: Analysis) -> lsp.Location | None:
    path = analysis.file_of(span)
    return None if path is None else lsp.Location(path.as_uri(), span_range(span))


def _use_line(analysis: Analysis, target: Path | None) -> lsp.Range:
    """The `use` that includes `target` (else the first `use`: the file came in through it)."""
    uses = analysis.uses
    for use in uses:
        if target is not None and analysis.use_target(use) == target:
            return span_range(use.span)
    return span_range(uses[0].span) if uses else line_range(0)
