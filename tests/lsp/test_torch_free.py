"""The language server only checks: starting it and checking a spec never imports torch, so it
answers in a fraction of a second (DESIGN.md, "Fast where people wait")."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the lsp extra: pip install -e '.[lsp]'")

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "deepspeed", "transformers")

SERVE_AND_CHECK = """
import sys
from pathlib import Path
from nnspec.lsp.server import make_server
from nnspec.lsp.analysis import analyse
from nnspec.lsp.completion import completions
from nnspec.lsp.hover import hover_markdown
make_server()
path = Path("specs/resnet18.nn").resolve()
found = analyse(path.read_text(), path)
assert not found.diagnostics and found.models, found.diagnostics
assert "conv2d" in hover_markdown(found, 6, 20)
assert completions(found, 6, 10)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (HEAVY,)


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_server_checks_without_torch():
    assert _run(SERVE_AND_CHECK) == ""
