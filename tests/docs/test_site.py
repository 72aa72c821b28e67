"""The documentation site builds with `mkdocs build --strict`: no broken link, no page left out."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from tests.docs.examples import ROOT


def _mkdocs() -> list[str]:
    if importlib.util.find_spec("mkdocs") is not None:
        return [sys.executable, "-m", "mkdocs"]
    found = shutil.which("mkdocs")
    assert found, "mkdocs is a test dependency: pip install -e '.[test]'"
    return [found]


def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(_mkdocs() + ["build", "--strict", "--site-dir", str(tmp_path / "site"),
                                         "--config-file", str(ROOT / "mkdocs.yml")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    for page in ("tutorial", "language", "layers", "cli", "architecture", "guides/training"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
    # ```nn blocks are coloured by nnspec's Pygments lexer (mkdocs.yml: codehilite, and the hook
    # that registers the lexer of this checkout)
    tutorial = (tmp_path / "site" / "tutorial" / "index.html").read_text(encoding="utf-8")
    assert '<span class="kd">model</span>' in tutorial
    assert '<span class="nb">conv2d</span>' in tutorial
