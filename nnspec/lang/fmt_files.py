"""`nnspec fmt SPEC... [--check]`: format files in place, or list those that are not formatted.

Every path is looked at before any file is written, so a usage error (a missing file) changes
nothing. A file that does not parse gets its diagnostic and is left as it is; the others are still
formatted. A file is rewritten only when its text changes, whole (a temporary file renamed onto
it, its permissions kept), so an editor or a crash never sees half of it.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from nnspec.lang.diagnostics import SpecError
from nnspec.lang.fmt import format_text
from nnspec.lang.resolve import MAX_FILE_BYTES, root_spec_problem
from nnspec.outputs import replace_file

STDIN = "-"


class FmtUsageError(ValueError):
    """A path that cannot be formatted at all (a one-line usage error)."""


def format_files(paths: list[str], check: bool) -> int:
    """Format `paths` (files, folders of .nn files, or `-` for stdin to stdout); 0 when all were
    formatted already or now are, 1 when --check found unformatted files or a file did not
    parse. Messages go to stdout (what changed) and stderr (diagnostics)."""
    files = [(p, None if p == STDIN else _read(p)) for p in _expand(paths)]
    failed = unformatted = 0
    for path, text in files:
        if path == STDIN:
            text = sys.stdin.read()
            try:
                formatted = format_text(text, "<stdin>")
            except SpecError as err:
                print(err.render(), file=sys.stderr)
                failed += 1
                continue
            if check:
                unformatted += formatted != text
            else:
                sys.stdout.write(formatted)
            continue
        try:
            formatted = format_text(text, str(path))
        except SpecError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        if formatted == text:
            continue
        if check:
            print(f"would reformat {path}")
            unformatted += 1
        else:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            replace_file(path, lambda tmp: tmp.write_bytes(formatted.encode("utf-8")), mode=mode)
            print(f"reformatted {path}")
    return 1 if failed or unformatted else 0


def _expand(paths: list[str]) -> list:
    """The files to format: each path named, and the .nn files under each folder named."""
    if paths.count(STDIN) > 1 or (STDIN in paths and len(paths) > 1):
        raise FmtUsageError("`-` (stdin to stdout) goes alone")
    files: list = []
    for p in paths:
        if p == STDIN:
            files.append(STDIN)
        elif os.path.isdir(p):
            files += sorted(f for f in Path(p).rglob("*.nn") if f.is_file())
        else:
            problem = root_spec_problem(p)
            if problem:
                raise FmtUsageError(problem)
            files.append(Path(p))
    return files


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FmtUsageError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes; not a spec")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise FmtUsageError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise FmtUsageError(f"cannot read {path}: {err.strerror}") from None
