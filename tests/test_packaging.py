"""The wheel ships the grammar, and the installed package reads it from there."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_grammar(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("nnspec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnspec/grammar/nnspec.lark" in names
    packaged = zipfile.ZipFile(wheel).read("nnspec/grammar/nnspec.lark").decode()
    assert packaged == (ROOT / "grammar" / "nnspec.lark").read_text()
    for module in ("nnspec/cli.py", "nnspec/layers/base.py", "nnspec/emit/source.py",
                   "nnspec/runtime/__init__.py"):
        assert module in names
    # the device profiles `nnspec plan` reads by name
    assert "nnspec/plan/profiles/h100-80gb.json" in names
