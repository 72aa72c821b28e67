"""Check one open document as `nnspec check` would, and keep what the editor features read.

The diagnostics are exactly the checker's: its errors, and the warnings it prints beside `ok`
(each Diagnostic says which by its severity). Beside them an `Analysis` keeps the document's parse
tree (definitions and `use` lines for go-to-definition), the resolved program (definitions of
included files) and the checked IR of each model the file defines (shapes for hover). Each is
kept as far as the passes got: a spec whose `train` section is wrong still has a checked model,
one whose model is wrong still has its definitions.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

from nnspec.compile import loads
from nnspec.lang import syntax as S
from nnspec.lang.check import DEFAULT_MAX_PARAMS, check
from nnspec.lang.diagnostics import Diagnostic, Span, SpecError
from nnspec.lang.parse import parse
from nnspec.lang.resolve import Program, resolve_text
from nnspec.ir import ModuleDef

UNTITLED = "<untitled>"  # the name of a document that is not a file yet


@dataclass
class Analysis:
    """What the checker found in one version of a document."""

    text: str
    name: str                    # the name its spans carry (Span.source.name)
    path: Path | None            # the file on disk; None for an unsaved document
    diagnostics: list[Diagnostic] = field(default_factory=list)
    syntax: S.File | None = None     # the parse tree; None when the text does not parse
    program: Program | None = None   # every definition it can see; None when includes fail
    models: list[ModuleDef] = field(default_factory=list)  # each root model, checked
    # the definitions in scope: the program's, or while the text does not resolve (a call being
    # typed), those of the last version that did, so completion still knows included blocks
    scope: Program | None = None

    @property
    def base(self) -> Path:
        """The folder its `use` paths are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()

    def file_of(self, span: Span) -> Path | None:
        """The file a span lies in: this document, or an included file (resolve names those
        with display_path, relative to the server's working directory)."""
        if span.source.name == self.name:
            return self.path
        return Path(span.source.name).resolve()

    def use_target(self, use: S.Use) -> Path | None:
        """The file a `use` of this document names, or None for a path that cannot be one."""
        try:
            return (self.base / use.path).resolve()
        except (OSError, RuntimeError, ValueError):  # NUL in the path, a link loop
            return None

    @property
    def uses(self) -> list[S.Use]:
        return [u for u in self.syntax.items if isinstance(u, S.Use)] if self.syntax else []


def analyse(text: str, path: Path | None, previous: Analysis | None = None,
            max_params: int = DEFAULT_MAX_PARAMS) -> Analysis:
    """Every diagnostic of `text` (the document at `path`), and the passes' results that exist;
    `previous` is the analysis of the version before, whose definitions stay in scope while
    this one does not resolve; `max_params` is `nnspec check --max-params`.

    Never raises for any text: a failure of the checker itself becomes a diagnostic that says so.
    """
    result = Analysis(text, str(path) if path is not None else UNTITLED, path)
    try:
        _run(result, max_params)
    except Exception as err:  # a checker bug must cost the user a diagnostic, not the server
        last = traceback.extract_tb(err.__traceback__)[-1]
        result.diagnostics.append(Diagnostic(
            "internal", f"internal error in nnspec's checker: {type(err).__name__}: {err}",
            None, f"please report it, with this file (at {Path(last.filename).name}:"
                  f"{last.lineno})"))
    result.scope = result.program or (previous.scope if previous is not None else None)
    return result


def _run(result: Analysis, max_params: int) -> None:
    try:
        result.syntax = parse(result.text, result.name)
        result.program = resolve_text(result.text, result.name, result.base)
    except SpecError as err:
        result.diagnostics.extend(err.diagnostics)
        return
    roots = result.program.root_models
    # a file of blocks only is checked where a model uses it; several models are checked each
    for model in [m.name for m in roots] if len(roots) > 1 else [None] if roots else []:
        ir = _check_model(result, model, max_params)
        if ir is not None:
            result.models.append(ir)


def _check_model(result: Analysis, model: str | None, max_params: int) -> ModuleDef | None:
    """Check one model the way `nnspec check` does (its sections too): add its errors, or its
    warnings when it checks; its IR, or None."""
    try:
        spec = loads(result.text, name=result.name, base=result.base, model=model,
                     max_params=max_params)
    except SpecError as err:
        _add_new(result.diagnostics, err.diagnostics)
    else:  # what `nnspec check` prints beside `ok` (W0713: layers `tensor` keeps whole)
        _add_new(result.diagnostics, spec.warnings)
        return spec.ir
    # the sections may be what failed: the model alone still gives shapes for hover
    try:
        return check(result.program, model, max_params=max_params)
    except SpecError:
        return None


def _add_new(found: list[Diagnostic], new: list[Diagnostic]) -> None:
    """Add the diagnostics not already there: two models of a file share their blocks' errors."""
    seen = {_key(d) for d in found}
    for d in new:
        if _key(d) not in seen:
            seen.add(_key(d))
            found.append(d)


def _key(d: Diagnostic) -> tuple:
    span = d.span
    where = None if span is None else (span.source.name, span.line, span.col, span.end_line,
                                       span.end_col)
    return d.code, d.message, where
