"""The one place that knows the order of the passes: parse -> resolve -> check -> lower -> emit."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .check import DEFAULT_MAX_PARAMS, check, const_values
from .diagnostics import Reporter, display_path
from .emit.module import load_source
from .emit.source import emit_source
from .emit.summary import render_table, summarize
from .ir import ModuleDef
from .lower import Lowered, lower
from .resolve import Program, resolve_file, resolve_text
from .sections import Settings, evaluate_sections


@dataclass
class Spec:
    """A checked spec: its IR, and the outputs emitted from it on demand."""

    program: Program
    ir: ModuleDef
    source_name: str
    settings: Settings

    @cached_property
    def lowered(self) -> Lowered:
        return lower(self.ir)

    @cached_property
    def source(self) -> str:
        """model.py: standalone PyTorch source."""
        return emit_source(self.lowered, self.source_name)

    def build(self):
        """A fresh torch.nn.Module for this spec (default PyTorch initialization)."""
        return load_source(self.source)()

    def summary(self) -> dict:
        """The per-layer table as data: params, trainable_params, flops, layers, ..."""
        return summarize(self.lowered)

    def summary_table(self) -> str:
        return render_table(self.summary())

    @property
    def name(self) -> str:
        return self.ir.name


def load(path: str | Path, *, model: str | None = None, max_params: int = DEFAULT_MAX_PARAMS,
         sets: dict[str, Any] | None = None, **overrides: Any) -> Spec:
    """Read, resolve and check a .nn file.

    Args:
        path: the spec.
        model: which model, when the file defines several.
        max_params: refuse larger models (checked without allocating anything).
        sets: overrides of the train/parallel sections, e.g. {"parallel.zero": 3}.
        **overrides: values for the model's parameters, e.g. num_classes=10.

    Raises:
        SpecError: the spec has errors; `str(err)` renders every diagnostic.
    """
    program = resolve_file(path)
    return _checked(program, display_path(Path(path)), model, max_params, sets, overrides)


def loads(text: str, *, name: str = "<string>", base: Path | None = None, model: str | None = None,
          max_params: int = DEFAULT_MAX_PARAMS, sets: dict[str, Any] | None = None,
          **overrides: Any) -> Spec:
    """Like `load`, for a spec given as text (includes resolve relative to `base`)."""
    program = resolve_text(text, name, base)
    return _checked(program, name, model, max_params, sets, overrides)


def _checked(program: Program, name: str, model, max_params, sets, overrides) -> Spec:
    ir = check(program, model, overrides, max_params)
    reporter = Reporter()
    settings = evaluate_sections(program.sections, const_values(program), dict(sets or {}),
                                 reporter)
    reporter.check()
    return Spec(program, ir, name, settings)
