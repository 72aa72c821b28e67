"""Golden files: each tests/golden/valid/NAME.nn has its expected summary table (NAME.summary.txt)
and generated source (NAME.model.py); each tests/golden/invalid/NAME.nn has the exact diagnostic
text it must produce (NAME.err) and must exit 1. Rewrite them with `pytest --update-golden`."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from nnspec.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
VALID = sorted((GOLDEN / "valid").glob("*.nn"))
INVALID = sorted((GOLDEN / "invalid").glob("*.nn"))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def compare(path: Path, actual: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(actual, encoding="utf-8")
        if not update:
            pytest.fail(f"{path.name} did not exist; written, check it and rerun")
    assert actual == path.read_text(encoding="utf-8"), f"differs from {path}"


@pytest.mark.parametrize("spec", VALID, ids=[p.stem for p in VALID])
def test_valid_spec(spec: Path, in_root, update_golden, tmp_path):
    rel = spec.relative_to(in_root)
    code, table, err = run_cli("summary", str(rel))
    assert code == 0, err
    compare(spec.with_suffix(".summary.txt"), table, update_golden)
    code, _, err = run_cli("compile", str(rel), "-o", str(tmp_path))
    assert code == 0, err
    compare(spec.with_suffix(".model.py"), (tmp_path / "model.py").read_text(), update_golden)


@pytest.mark.parametrize("spec", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec(spec: Path, in_root, update_golden, tmp_path):
    rel = spec.relative_to(in_root)
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", str(rel), "-o", str(out_dir))
    assert code == 1, (code, out, err)
    assert "Traceback" not in err
    assert not out_dir.exists(), "a failed compile must not write anything"
    compare(spec.with_suffix(".err"), err, update_golden)


def test_enough_invalid_fixtures():
    assert len(INVALID) >= 40


SPECS = sorted((GOLDEN.parent.parent / "specs").glob("*.nn"))
SHIPPED = GOLDEN / "shipped"


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_sources(spec: Path, in_root, update_golden, tmp_path):
    """The generated files of every shipped spec are pinned byte for byte, so a refactoring of
    the compiler proves it changed nothing a user runs."""
    rel = spec.relative_to(in_root)
    code, _, err = run_cli("compile", str(rel), "-o", str(tmp_path), "--max-params", str(10**12))
    assert code == 0, err
    for generated in sorted(tmp_path.iterdir()):
        if generated.name.startswith("."):
            continue
        compare(SHIPPED / f"{spec.stem}.{generated.name}", generated.read_text(), update_golden)
