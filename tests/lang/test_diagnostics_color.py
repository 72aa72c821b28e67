"""Diagnostics in colour on a terminal only: NO_COLOR, FORCE_COLOR, --color, pipes and a pty."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.compile import loads
from nnspec.lang.diagnostics import SpecError, use_color

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BAD = "model net {\n  input x: float[1, 8, 8]\n  conv1: conv2d(16, 3, stide=1)\n}\n"


@pytest.fixture
def bad_spec(tmp_path) -> Path:
    path = tmp_path / "bad.nn"
    path.write_text(BAD)
    return path


def spec_error() -> SpecError:
    with pytest.raises(SpecError) as info:
        loads(BAD, name="bad.nn")
    return info.value


def test_colour_adds_styles_and_nothing_else():
    err = spec_error()
    plain, coloured = err.render(), err.render(color=True)
    assert ANSI.sub("", coloured) == plain
    assert "\x1b[1;31merror[E0301]\x1b[0m" in coloured          # bold red error and code
    assert "\x1b[1;34m3 |\x1b[0m" in coloured                    # blue line number and gutter
    assert "\x1b[1;31m^^^^^^^\x1b[0m" in coloured                # the caret run in red
    assert "\x1b[1mhelp:\x1b[0m did you mean `stride`?" in coloured
    assert not ANSI.search(plain)


class Tty:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("choice, environ, tty, want", [
    ("auto", {}, True, True),
    ("auto", {}, False, False),
    ("auto", {"NO_COLOR": "1"}, True, False),
    ("auto", {"NO_COLOR": ""}, True, True),            # no-color.org: only a non-empty value
    ("auto", {"TERM": "dumb"}, True, False),
    ("auto", {"FORCE_COLOR": "1"}, False, True),
    ("auto", {"FORCE_COLOR": "0"}, False, False),
    ("auto", {"FORCE_COLOR": "1", "NO_COLOR": "1"}, True, False),
    ("always", {"NO_COLOR": "1"}, False, True),        # a flag on the command line wins
    ("never", {"FORCE_COLOR": "1"}, True, False),
])
def test_when_to_colour(choice, environ, tty, want):
    assert use_color(Tty(tty), choice, environ) is want


def test_a_stream_without_isatty_gets_no_colour():
    assert use_color(object(), "auto", {}) is False


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm", **extra)
    return env


def _on_a_pty(argv: list[str], env: dict) -> str:
    """Run the CLI with its stderr on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "nnspec.cli", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=follower, cwd=ROOT)
        os.close(follower)
        chunks = []
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                break
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=120) == 1
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_a_terminal_gets_colour(bad_spec):
    out = _on_a_pty(["check", str(bad_spec)], _env())
    assert "\x1b[1;31merror[E0301]\x1b[0m" in out and "stide" in out


def test_no_color_on_a_terminal_gets_none(bad_spec):
    out = _on_a_pty(["check", str(bad_spec)], _env(NO_COLOR="1"))
    assert "error[E0301]" in out and not ANSI.search(out)


def test_a_pipe_gets_none(bad_spec):
    proc = subprocess.run([sys.executable, "-m", "nnspec.cli", "check", str(bad_spec)],
                          env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "error[E0301]" in proc.stderr
    assert not ANSI.search(proc.stderr)


@pytest.mark.parametrize("flag, coloured", [("--color=always", True), ("--color=never", False)])
def test_the_color_flag(bad_spec, capsys, flag, coloured):
    assert main(["check", str(bad_spec), flag]) == 1
    err = capsys.readouterr().err
    assert "error[E0301]" in ANSI.sub("", err) and bool(ANSI.search(err)) is coloured
