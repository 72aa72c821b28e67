"""Write a chosen plan back into a spec's `parallel { ... }` section, in place.

Only the settings the plan changes are touched, through the parser's spans: a value is replaced
where it is written, a new setting goes on its own line before the closing brace with the
section's indentation, and a setting that no longer applies (stage_boundaries for another number
of stages) is removed with its line. Comments and formatting everywhere else stay byte for byte.
A spec without a parallel section gets one at its end. The new text is checked by compiling it
before it replaces the file, atomically.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nnspec.lang.config import ParallelSpec
from nnspec.lang.diagnostics import Span
from nnspec.emit.text import doc_text

# the settings a plan decides, in the order new ones are written
PLAN_KEYS = ("data_parallel", "zero", "offload_optimizer", "offload_param", "pipeline_stages",
             "micro_batch", "grad_accum", "activation_checkpointing")


class RewriteError(ValueError):
    pass


def plan_settings(plan: dict) -> dict:
    """The parallel settings of a plan (a dict from estimate.evaluate)."""
    return {"data_parallel": plan["data_parallel"], "zero": plan["zero_stage"],
            "offload_optimizer": plan["offload_optimizer"], "offload_param": plan["offload_param"],
            "pipeline_stages": plan["pipeline_stages"], "tensor": plan["tensor_parallel"],
            "micro_batch": plan["micro_batch"],
            "grad_accum": plan["grad_accum"],
            "activation_checkpointing": tuple(plan["activation_checkpointing"])}


def format_value(value) -> str:
    """A setting value as spec text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str) and not value.isidentifier():
        return '"' + doc_text(value) + '"'  # escapes quotes, backslashes and line breaks
    return str(value)


def rewrite_parallel(text: str, section, settings: dict) -> str:
    """`text` with its parallel section (a syntax.Section, or None) set to `settings`.

    A setting equal to its default is written only where the section already has it; an empty
    activation_checkpointing is removed.
    """
    defaults = ParallelSpec()
    wanted = {k: v for k, v in settings.items()}
    drop = set()
    stages = wanted.get("pipeline_stages", 1)
    if wanted.get("activation_checkpointing") == ():
        drop.add("activation_checkpointing")
    written = {s.key: s for s in section.settings} if section is not None else {}
    bounds = written.get("stage_boundaries")
    if bounds is not None and stages == 1:
        drop.add("stage_boundaries")
    elif bounds is not None:
        drop.add("stage_boundaries")  # placed by the partitioner for the new depth
    if section is None:
        lines = [f"  {k} = {format_value(v)}" for k, v in wanted.items()
                 if k not in drop and v != getattr(defaults, k)]
        sep = "" if text.endswith("\n") or not text else "\n"
        return text + sep + "\nparallel {\n" + "\n".join(lines) + "\n}\n"
    edits: list[tuple[int, int, str]] = []
    for key, setting in written.items():
        if key in drop:
            edits.append(_delete(text, setting.span))
        elif key in wanted:
            new = format_value(wanted[key])
            start, end = _offset(text, setting.value.span), _end(text, setting.value.span)
            if text[start:end] != new:
                edits.append((start, end, new))
    missing = [k for k, v in wanted.items()
               if k not in written and k not in drop and v != getattr(defaults, k)]
    if missing:
        close = _end(text, section.span) - 1           # the closing brace
        line_start = text.rfind("\n", 0, close) + 1
        if text[line_start:close].strip():
            raise RewriteError("the parallel section ends on the line of a setting; put its "
                               "closing brace on a line of its own")
        indent = _indent(text, section)
        block = "".join(f"{indent}{k} = {format_value(wanted[k])}\n" for k in missing)
        edits.append((line_start, line_start, block))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def write_spec(path: Path, text: str, check) -> None:
    """Replace `path` with `text` atomically once `check(temp_path)` accepts the new text (it
    raises to refuse); the temporary file sits beside the spec so its includes resolve."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nn", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        check(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _indent(text: str, section) -> str:
    if section.settings:
        s = section.settings[0].span
        line = text.split("\n")[s.line - 1]
        return line[:len(line) - len(line.lstrip())]
    return "  "


def _offset(text: str, span: Span) -> int:
    return _at(text, span.line, span.col)


def _end(text: str, span: Span) -> int:
    return _at(text, span.end_line, span.end_col)


def _at(text: str, line: int, col: int) -> int:
    pos = 0
    for _ in range(line - 1):
        pos = text.index("\n", pos) + 1
    return pos + col - 1


def _delete(text: str, span: Span) -> tuple[int, int, str]:
    """Remove a setting; its whole line when nothing else is on it but a comment."""
    start, end = _offset(text, span), _end(text, span)
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    rest = text[end:line_end].strip()
    if not text[line_start:start].strip() and (not rest or rest.startswith("#")):
        return line_start, line_end, ""
    return start, end, ""
