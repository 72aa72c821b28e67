"""The wheel ships every module and the grammar, and the installed package reads it from there."""
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
    assert "nnspec/lang/nnspec.lark" in names
    packaged = zipfile.ZipFile(wheel).read("nnspec/lang/nnspec.lark").decode()
    assert packaged == (ROOT / "nnspec" / "lang" / "nnspec.lark").read_text()
    # every module of the source tree, so a package left out of pyproject.toml is caught here
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nnspec").rglob("*.py")}
    assert len(sources) > 80
    assert sources - set(names) == set()
    # the device profiles `nnspec plan` reads by name
    assert "nnspec/plan/profiles/h100-80gb.json" in names
