"""`nnspec fmt SPEC... [--check]` on files: exit codes, rewriting in place, files left alone."""
from __future__ import annotations

import ast
import io
import os
import sys
from pathlib import Path

import pytest

from nnspec.cli import main

UGLY = "model m{\n input x:float[3]\n fc:linear(2) # a comment\n}\n"
PRETTY = "model m {\n  input x: float[3]\n  fc: linear(2)  # a comment\n}\n"
BROKEN = "model m {\n  x = (1 +\n}\n"


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_check_lists_unformatted_files_and_changes_nothing(tmp_path, capsys):
    ugly, pretty = write(tmp_path / "ugly.nn", UGLY), write(tmp_path / "pretty.nn", PRETTY)
    assert main(["fmt", "--check", str(ugly), str(pretty)]) == 1
    out = capsys.readouterr().out
    assert out == f"would reformat {ugly}\n"
    assert ugly.read_text() == UGLY


def test_check_passes_when_all_are_formatted(tmp_path, capsys):
    pretty = write(tmp_path / "pretty.nn", PRETTY)
    assert main(["fmt", "--check", str(pretty)]) == 0
    assert capsys.readouterr().out == ""


def test_rewrites_in_place_keeping_permissions(tmp_path, capsys):
    ugly = write(tmp_path / "ugly.nn", UGLY, 0o640)
    pretty = write(tmp_path / "pretty.nn", PRETTY)
    before = pretty.stat().st_mtime_ns, pretty.stat().st_ino
    assert main(["fmt", str(ugly), str(pretty)]) == 0
    assert capsys.readouterr().out == f"reformatted {ugly}\n"
    assert ugly.read_text() == PRETTY
    assert ugly.stat().st_mode & 0o777 == 0o640
    assert (pretty.stat().st_mtime_ns, pretty.stat().st_ino) == before  # not touched at all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretty.nn", "ugly.nn"]  # no temp files
    assert main(["fmt", "--check", str(ugly)]) == 0


def test_folder_formats_its_specs(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    ugly = write(tmp_path / "sub" / "ugly.nn", UGLY)
    write(tmp_path / "notes.txt", UGLY)
    assert main(["fmt", str(tmp_path)]) == 0
    assert ugly.read_text() == PRETTY
    assert (tmp_path / "notes.txt").read_text() == UGLY


def test_a_file_that_does_not_parse_is_reported_and_untouched(tmp_path, capsys):
    broken, ugly = write(tmp_path / "broken.nn", BROKEN), write(tmp_path / "ugly.nn", UGLY)
    assert main(["fmt", str(broken), str(ugly)]) == 1
    err = capsys.readouterr().err
    assert "error[E0106]" in err and f"{broken}:2:" in err and "help:" in err
    assert "Traceback" not in err
    assert broken.read_text() == BROKEN
    assert ugly.read_text() == PRETTY  # the other files are still formatted


def test_a_missing_file_is_a_usage_error_before_anything_is_written(tmp_path, capsys):
    ugly = write(tmp_path / "ugly.nn", UGLY)
    assert main(["fmt", str(ugly), str(tmp_path / "missing.nn")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnspec: error: ") and "missing.nn" in err and err.count("\n") == 1
    assert ugly.read_text() == UGLY


def test_not_utf8_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.nn"
    bad.write_bytes(b"const A = 1 # \xff\n")
    assert main(["fmt", str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_stdin_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(UGLY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == PRETTY
    monkeypatch.setattr(sys, "stdin", io.StringIO(UGLY))
    assert main(["fmt", "--check", "-"]) == 1
    assert capsys.readouterr().out == ""


FMT_MODULES = ["nnspec.lang.fmt", "nnspec.lang.fmt_expr", "nnspec.lang.fmt_files"]


def _top_level_imports(module: str) -> set[str]:
    """The modules a module imports when it is loaded (imports inside functions are not)."""
    path = Path(__file__).resolve().parents[2] / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("module", FMT_MODULES)
def test_fmt_modules_import_no_torch(module: str):
    """The formatter's own modules, and the nnspec modules they load, import no torch (the
    package's __init__ is tests/test_torch_free.py's concern)."""
    seen, todo, outside = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in _top_level_imports(name):
            root = Path(__file__).resolve().parents[2]
            if imported.startswith("nnspec.") and ((root / imported.replace(".", "/")).with_suffix(
                    ".py").exists() or (root / imported.replace(".", "/") / "__init__.py").exists()):
                todo.append(imported)
            elif not imported.startswith("nnspec"):
                outside.add(imported.partition(".")[0])
    assert not outside & {"torch", "deepspeed", "transformers", "numpy"}, sorted(outside)
