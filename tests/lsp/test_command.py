"""`nnspec lsp` as a command: without pygls it is a one-line usage error, not a traceback; a bug
in the checker is a diagnostic that says so, not a dead server."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the lsp extra: pip install -e '.[lsp]'")

from nnspec.lsp import analysis  # noqa: E402
from nnspec.lsp.diagnostics import lsp_diagnostics  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_PYGLS = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pygls", "lsprotocol"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from nnspec.cli import main
sys.exit(main(["lsp"]))
"""


def test_without_pygls_nnspec_lsp_says_what_to_install():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, "-c", WITHOUT_PYGLS], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("nnspec: error: `nnspec lsp` needs pygls")
    assert "pip install 'nnspec[lsp]'" in line


def test_a_checker_bug_is_a_diagnostic(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(analysis, "resolve_text", broken)
    found = analysis.analyse("model m {\n  input x: float[4]\n}\n", tmp_path / "m.nn")
    [d] = found.diagnostics
    assert d.code == "internal" and "ZeroDivisionError: division by zero" in d.message
    assert "please report it" in d.help
    [shown] = lsp_diagnostics(found)
    assert shown.range.start.line == 0 and shown.code == "internal"
