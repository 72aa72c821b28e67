"""Resolve: read a spec and the files it includes, and collect their definitions by name.

Only files named by `use` are ever read; paths are relative to the including file. Include cycles,
missing files and duplicate definitions are located diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import syntax as S
from .diagnostics import did_you_mean, Reporter, Source, SpecError, Span, display_path
from .parse import parse

MAX_FILE_BYTES = 4 * 1024 * 1024  # a spec is a short text; refuse anything larger


@dataclass
class Program:
    """Every definition visible from the root spec, by name, and the root file's own models."""

    root: Path
    definitions: dict[str, S.Definition] = field(default_factory=dict)
    consts: dict[str, S.Const] = field(default_factory=dict)
    root_models: list[S.Definition] = field(default_factory=list)
    root_source: Source | None = None  # the root file's text, to locate file-wide errors
    sections: dict[str, S.Section] = field(default_factory=dict)  # the root file's train/parallel


def resolve_file(path: str | Path) -> Program:
    """Read `path` and its includes into a Program; raises SpecError."""
    root = Path(path)
    program = Program(root)
    reporter = Reporter()
    _load(root, None, [], program, reporter, set())
    reporter.check()
    return program


def resolve_text(text: str, name: str = "<string>", base: Path | None = None) -> Program:
    """Resolve a spec given as text; its includes are read relative to `base` (default: cwd)."""
    program = Program(Path(name))
    reporter = Reporter()
    _add_file(parse(text, name), base or Path.cwd(), [], program, reporter, set(), is_root=True)
    reporter.check()
    return program


def _load(path: Path, use: S.Use | None, stack: list[tuple[Path, Span]], program: Program,
          reporter: Reporter, done: set[Path]) -> None:
    where = use.span if use else None
    try:
        real = path.resolve()
        if real.stat().st_size > MAX_FILE_BYTES:
            reporter.error("E0602", f"`{display_path(path)}` is too large for a spec "
                           f"({real.stat().st_size} bytes)", where)
            return
        text = real.read_text(encoding="utf-8")
    except FileNotFoundError:
        reporter.error("E0601", f"cannot find `{display_path(path)}`", where,
                       "included paths are relative to the file that includes them" if use else None)
        return
    except UnicodeDecodeError:
        reporter.error("E0602", f"`{display_path(path)}` is not UTF-8 text", where)
        return
    except OSError as err:
        reporter.error("E0602", f"cannot read `{display_path(path)}`: {err.strerror}", where)
        return
    if real in done:
        return
    done.add(real)
    try:
        tree = parse(text, display_path(path))
    except SpecError as err:
        reporter.extend(err)
        return
    _add_file(tree, real.parent, stack + [(real, where)] if where else [(real, where)], program,
              reporter, done, is_root=use is None)


def _add_file(tree: S.File, base: Path, stack, program: Program, reporter: Reporter,
              done: set[Path], is_root: bool) -> None:
    if is_root:
        program.root_source = tree.span.source
    for item in tree.items:
        if isinstance(item, S.Use):
            target = (base / item.path).resolve()
            chain = [p for p, _ in stack]
            if target in chain:
                notes = [(f"`{display_path(p)}` is included here", s) for p, s in stack[1:] if s]
                reporter.error("E0603", f"include cycle: `{item.path}` includes itself",
                               item.span, "move the shared blocks into a file both can include",
                               notes)
                continue
            _load(target, item, stack, program, reporter, done)
        elif isinstance(item, S.Definition):
            _define(program.definitions, item.name, item, reporter, "definition")
            if is_root and item.is_model:
                program.root_models.append(item)
        elif isinstance(item, S.Const):
            _define(program.consts, item.name, item, reporter, "constant")
        elif isinstance(item, S.Section):
            _add_section(item, program, reporter, is_root)


def _define(table: dict, name: str, item, reporter: Reporter, what: str) -> None:
    if name in table:
        reporter.error("E0204", f"`{name}` is defined twice", item.span,
                       "rename one of them",
                       [(f"first {what} of `{name}`", table[name].span)])
    else:
        table[name] = item


SECTION_NAMES = ("train", "parallel", "compress")


def _add_section(item: S.Section, program: Program, reporter: Reporter, is_root: bool) -> None:
    if item.name not in SECTION_NAMES:
        reporter.error("E0704", f"unknown section `{item.name}`", item.name_span,
                       did_you_mean(item.name, SECTION_NAMES)
                       or f"sections are: {', '.join(SECTION_NAMES)}")
    elif not is_root:
        reporter.error("E0705", f"a `{item.name}` section belongs in the spec being compiled, "
                       "not in an included file", item.name_span,
                       "move it to the root spec; included files hold blocks and constants")
    else:
        _define(program.sections, item.name, item, reporter, "section")
