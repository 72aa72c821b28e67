"""Resolve: read a spec and the files it includes, and collect their definitions by name.

Only files named by `use` are ever read; paths are relative to the including file. Include cycles,
missing files and duplicate definitions are located diagnostics.

A spec is data, and an include is a spec: only `.nn` files (the `use` path and the file it
resolves to, links followed), read only from regular files of at most MAX_FILE_BYTES (a FIFO would
hang the checker, /dev/zero never ends). A file that fails these checks is never opened, so no
diagnostic can quote a line of a file that is not a spec.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import did_you_mean, Reporter, Source, SpecError, Span, display_path
from nnspec.lang.parse import parse

MAX_INCLUDE_DEPTH = 64  # files including files; a chain of 1,000 overflowed Python's stack
MAX_FILE_BYTES = 4 * 1024 * 1024  # a spec is a short text; refuse anything larger
MAX_PATH_CHARS = 1024             # a `use` path longer than this is not a path a person wrote
MAX_NAME_BYTES = 255              # the longest file name common file systems allow (NAME_MAX)


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
    text = _read_spec(path, use, reporter)
    if text is None:
        return
    real = path.resolve()
    if real in done:
        return
    done.add(real)
    try:
        tree = parse(text, _display(path))
    except SpecError as err:
        reporter.extend(err)
        return
    _add_file(tree, real.parent, stack + [(real, where)] if where else [(real, where)], program,
              reporter, done, is_root=use is None)


def _read_spec(path: Path, use: S.Use | None, reporter: Reporter) -> str | None:
    """The text of a spec file, or None after reporting why it cannot be one."""
    where = use.span if use else None
    shown = _shown(path)
    if use is not None and path.suffix != ".nn":  # `path` is resolved: where a link leads
        reporter.error("E0604", f"`{_escaped(use.path)}` leads to `{shown}`, which is not a .nn "
                       "file", where, ONLY_SPECS_HELP)
        return None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        reporter.error("E0601", f"cannot find `{shown}`", where,
                       "included paths are relative to the file that includes them" if use else None)
        return None
    except (OSError, ValueError) as err:
        # a link loop (Python 3.13's resolve() no longer raises on one; 3.11's does)
        if isinstance(err, OSError) and err.errno == errno.ELOOP:
            reporter.error("E0606", f"`{shown}` leads into a symbolic link loop", where,
                           NOT_A_PATH_HELP)
        else:
            reporter.error("E0602", f"cannot read `{shown}`: {_reason(err)}", where)
        return None
    if not stat.S_ISREG(info.st_mode):
        reporter.error("E0605", f"`{shown}` is {_file_kind(info.st_mode)}, not a spec file",
                       where, "a spec is read only from a regular .nn file")
        return None
    data = _read_regular(path, reporter, where, shown)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        reporter.error("E0602", f"`{shown}` is not UTF-8 text", where)
        return None


def _read_regular(path: Path, reporter: Reporter, where, shown: str) -> bytes | None:
    """At most MAX_FILE_BYTES + 1 bytes of a file that must still be regular once opened (it may
    have been swapped for a FIFO since it was looked at: O_NONBLOCK keeps the open from hanging)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        reporter.error("E0602", f"cannot read `{shown}`: {_reason(err)}", where)
        return None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            reporter.error("E0605", f"`{shown}` is {_file_kind(mode)}, not a spec file", where,
                           "a spec is read only from a regular .nn file")
            return None
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        reporter.error("E0602", f"`{shown}` is too large for a spec (over {MAX_FILE_BYTES} bytes)",
                       where)
        return None
    return data


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return "a symbolic link loop"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower() if err.strerror[:1].isupper() else err.strerror
    return "not a usable path"


NOT_A_PATH_HELP = "write the path of a .nn file, relative to this file"
ONLY_SPECS_HELP = "only .nn spec files can be included"


def _use_path_problem(text: str) -> tuple[str, str, str] | None:
    """(code, why, help) when a `use` path cannot name a spec, judged from its text alone."""
    if "\x00" in text:
        return "E0606", "contains a NUL character", NOT_A_PATH_HELP
    if len(text) > MAX_PATH_CHARS or any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
                                         for part in text.split("/")):
        return "E0606", "is too long for a file path", NOT_A_PATH_HELP
    if not text.endswith(".nn"):
        return "E0604", "does not name a .nn file", ONLY_SPECS_HELP
    return None


def _escaped(text: str) -> str:
    """User text in a one-line message: unprintable characters (line breaks) as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _display(path: Path) -> str:
    """display_path, for a path that may not resolve (a link loop)."""
    try:
        return display_path(path)
    except (OSError, RuntimeError, ValueError):
        return str(path)


def _shown(path: Path) -> str:
    return _escaped(_display(path))


def root_spec_problem(path: str | os.PathLike) -> str | None:
    """Why the spec file named on the command line cannot be read as one (for a one-line usage
    error), or None. It must exist and be a regular file: a FIFO would hang, a device never ends."""
    shown = _escaped(str(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"no such spec file: {shown}"
    except (OSError, ValueError) as err:
        return f"cannot read spec file {shown}: {_reason(err)}"
    if not stat.S_ISREG(info.st_mode):
        return f"spec file {shown} is {_file_kind(info.st_mode)}, not a regular file"
    return None


def _add_file(tree: S.File, base: Path, stack, program: Program, reporter: Reporter,
              done: set[Path], is_root: bool) -> None:
    if is_root:
        program.root_source = tree.span.source
    for item in tree.items:
        if isinstance(item, S.Use):
            target = _use_target(base, item, reporter)
            if target is None:
                continue
            chain = [p for p, _ in stack]
            if target in chain:
                notes = [(f"`{display_path(p)}` is included here", s) for p, s in stack[1:] if s]
                reporter.error("E0603", f"include cycle: `{_escaped(item.path)}` includes itself",
                               item.span, "move the shared blocks into a file both can include",
                               notes)
                continue
            if len(stack) >= MAX_INCLUDE_DEPTH:  # _load and _add_file recurse once per level
                reporter.error("E0607", f"includes nest more than {MAX_INCLUDE_DEPTH} files deep",
                               item.span, "include the files a spec needs from fewer levels, e.g. "
                               "all of them from the spec itself")
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


def _use_target(base: Path, item: S.Use, reporter: Reporter) -> Path | None:
    """The resolved file a `use` names, or None after a diagnostic on the `use` line."""
    problem = _use_path_problem(item.path)
    if problem is None:
        try:
            return (base / item.path).resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: Python 3.11's link loop
            problem = "E0606", "leads into a symbolic link loop", NOT_A_PATH_HELP
    code, why, help = problem
    shown = _escaped(item.path)
    shown = shown if len(shown) <= 80 else shown[:60] + "..."  # the line below shows it whole
    reporter.error(code, f"`use` path `{shown}` {why}", item.span, help)
    return None


def _define(table: dict, name: str, item, reporter: Reporter, what: str) -> None:
    if name in table:
        reporter.error("E0204", f"`{name}` is defined twice", item.span,
                       "rename one of them",
                       [(f"first {what} of `{name}`", table[name].span)])
    else:
        table[name] = item


SECTION_NAMES = ("train", "parallel", "compress", "weights", "ensemble")


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
