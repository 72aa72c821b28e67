"""Includes and the root spec are read only from regular .nn files (issue 9, defects 4 and 7).

The cases a repository file can hold are golden fixtures (tests/golden/invalid/include_*); these
need a FIFO, a link or a device, made here in tmp_path. A FIFO must never hang the checker: every
test runs under an alarm that turns a hang into a failure.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.lang.diagnostics import SpecError
from nnspec.lang.resolve import MAX_FILE_BYTES

SECRET = "root:SECRET-LINE-THAT-MUST-NOT-BE-QUOTED:19000:0:99999:7:::"
MODEL = "model m {\n  input x: float[4]\n  out x -> fc: linear(4)\n}\n"


class Hung(BaseException):
    """Not an OSError (TimeoutError is one): no `except OSError` in nnspec can swallow it."""


@pytest.fixture(autouse=True)
def no_hang():
    """Fail (instead of hanging the suite) when a read blocks, as on a FIFO with no writer."""
    def hung(signum, frame):
        raise Hung("reading the spec hung")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def check_use(folder: Path, use: str) -> str:
    """The diagnostics of a spec in `folder` whose first line is `use "<use>"`."""
    spec = folder / "root.nn"
    spec.write_text(f'use "{use}"\n{MODEL}', encoding="utf-8")
    code, err = run_cli("check", str(spec))
    assert code == 1, err
    assert "Traceback" not in err and SECRET not in err
    assert f"{spec}:1:1" in err, "the diagnostic points at the use line"
    return err


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


def test_a_fifo_named_nn_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.nn")
    assert "error[E0605]" in check_use(tmp_path, "pipe.nn") and "a FIFO" in check_use(
        tmp_path, "pipe.nn")


def test_a_directory_named_nn_is_refused(tmp_path):
    (tmp_path / "folder.nn").mkdir()
    assert "error[E0605]: `" in check_use(tmp_path, "folder.nn")


def test_a_symlink_loop_is_located(tmp_path):
    os.symlink("b.nn", tmp_path / "a.nn")
    os.symlink("a.nn", tmp_path / "b.nn")
    err = check_use(tmp_path, "a.nn")
    assert "error[E0606]" in err and "symbolic link loop" in err


def test_a_link_named_nn_to_another_file_is_refused_unread(tmp_path, secret):
    os.symlink(secret, tmp_path / "blocks.nn")
    err = check_use(tmp_path, "blocks.nn")
    assert "error[E0604]" in err and "not a .nn file" in err


@pytest.mark.parametrize("use", ["/etc/shadow", "/etc/passwd", "/dev/zero", "/dev/urandom",
                                 "shadow", "../shadow", "blocks.nn.txt", "blocks.NN", "."])
def test_a_path_that_is_not_nn_is_refused_unread(tmp_path, secret, use):
    err = check_use(tmp_path, use)
    assert "error[E0604]" in err and "does not name a .nn file" in err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_link_to_a_device_is_refused(tmp_path, device):
    os.symlink(device, tmp_path / "dev.nn")
    assert "error[E0604]" in check_use(tmp_path, "dev.nn")


def test_a_spec_over_the_size_cap_is_refused(tmp_path):
    (tmp_path / "big.nn").write_text("#" * (MAX_FILE_BYTES + 1), encoding="utf-8")
    err = check_use(tmp_path, "big.nn")
    assert "error[E0602]" in err and "too large" in err


def test_a_spec_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "latin.nn").write_bytes(b"# caf\xe9\n")
    assert "is not UTF-8 text" in check_use(tmp_path, "latin.nn")


@pytest.mark.parametrize("use,why", [
    ("a\\x00b.nn", "NUL"),
    ("x" * 300 + ".nn", "too long"),
    ("/".join(["d"] * 600) + ".nn", "too long"),
])
def test_a_path_that_cannot_name_a_file_is_located(tmp_path, use, why):
    err = check_use(tmp_path, use)
    assert "error[E0606]" in err and why in err
    assert len(err.splitlines()[0]) < 200, "the message shortens the path; the line shows it"


def test_a_line_break_in_a_use_path_is_shown_escaped(tmp_path):
    err = check_use(tmp_path, "a\\nb\\u2028c.nn")
    assert "error[E0601]" in err and "a\\nb\\u2028c.nn" in err.splitlines()[0]


@pytest.mark.parametrize("make", ["fifo", "dir", "device", "loop", "long", "missing"])
def test_the_root_spec_must_be_a_regular_file(tmp_path, make):
    path = {"fifo": tmp_path / "root.nn", "dir": tmp_path / "d.nn", "device": Path("/dev/zero"),
            "loop": tmp_path / "loop.nn", "long": tmp_path / ("x" * 300 + ".nn"),
            "missing": tmp_path / "none.nn"}[make]
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dir":
        path.mkdir()
    elif make == "loop":
        os.symlink(path.name, path)
    for command in (["check"], ["compile", "-o", str(tmp_path / "out")],
                    ["train", "--out", str(tmp_path / "run")]):
        code, err = run_cli(command[0], str(path), *command[1:])
        assert code == 2, (command, err)
        assert err.startswith("nnspec: error: ") and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_the_library_refuses_a_fifo_root_with_a_diagnostic(tmp_path):
    os.mkfifo(tmp_path / "root.nn")
    with pytest.raises(SpecError, match="E0605"):
        nnspec.load(tmp_path / "root.nn")


def test_a_teacher_must_be_a_nn_file(tmp_path, secret):
    spec = tmp_path / "student.nn"
    spec.write_text(MODEL + f'compress {{\n  distill = teacher("{secret}", weights="t.pt")\n}}\n',
                    encoding="utf-8")
    code, err = run_cli("check", str(spec))
    assert code == 1 and "error[E0722]" in err and f"{spec}:6:" in err and SECRET not in err


def test_a_good_include_still_works(tmp_path):
    (tmp_path / "blocks.nn").write_text("block Lin(n) {\n  in x\n  out x -> fc: linear(n)\n}\n",
                                        encoding="utf-8")
    spec = tmp_path / "root.nn"
    spec.write_text('use "blocks.nn"\nmodel m {\n  input x: float[4]\n  out x -> b: Lin(4)\n}\n',
                    encoding="utf-8")
    assert nnspec.load(spec).summary()["params"] == 20


def test_includes_nested_deeper_than_the_limit_are_a_located_error(tmp_path):
    from nnspec.lang.resolve import MAX_INCLUDE_DEPTH

    depth = 1_000  # 600 levels overflowed Python's stack before the limit
    for i in range(depth):
        (tmp_path / f"c{i}.nn").write_text(f'use "c{i + 1}.nn"\nblock B{i}(n) = relu\n')
    (tmp_path / f"c{depth}.nn").write_text("block Last(n) = relu\n")
    (tmp_path / "main.nn").write_text('use "c0.nn"\n' + MODEL)
    with pytest.raises(SpecError) as err:
        nnspec.load(tmp_path / "main.nn")
    (diag,) = err.value.diagnostics
    assert diag.code == "E0607" and f"more than {MAX_INCLUDE_DEPTH} files deep" in diag.message
    # main.nn and c0 .. c62 are 64 files: the `use` in the 64th is refused
    assert diag.span.source.name.endswith(f"c{MAX_INCLUDE_DEPTH - 2}.nn")
