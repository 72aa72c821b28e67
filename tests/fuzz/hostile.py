"""Hostile files: what a spec's `use` line, or the spec path itself, may point at.

Each case builds its files in an empty folder and names the spec to check. Includes must be read
only from regular, size-capped .nn files, with a diagnostic for everything else; nothing may
hang on a FIFO or read /dev/zero forever, and no diagnostic may quote a file that is not a spec
(`secret`: text that must never reach the output).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MODEL = "model m() {\n  input x: float[4]\n  out x -> relu\n}\n"
SECRET = "root:x:0:0:do-not-print-me"
TOO_LARGE = 5 * 1024 * 1024  # past resolve.MAX_FILE_BYTES


@dataclass(frozen=True)
class FileCase:
    name: str
    setup: Callable[[Path], str]   # builds the files in a folder; returns the spec path to check
    secret: str | None = None


def _including(target: str, prepare: Callable[[Path], None] = lambda d: None):
    """A case whose main.nn includes `target` (spec-string syntax: escapes allowed)."""
    def setup(folder: Path) -> str:
        prepare(folder)
        (folder / "main.nn").write_text(f'use "{target}"\n{MODEL}', encoding="utf-8")
        return str(folder / "main.nn")
    return setup


def _raw_including(target: bytes):
    """main.nn includes `target` written as raw bytes between the quotes (a NUL, say)."""
    def setup(folder: Path) -> str:
        (folder / "main.nn").write_bytes(b'use "' + target + b'"\n' + MODEL.encode())
        return str(folder / "main.nn")
    return setup


def _symlink_loop(folder: Path) -> None:
    os.symlink("loop_b.nn", folder / "loop_a.nn")
    os.symlink("loop_a.nn", folder / "loop_b.nn")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "fifo.nn")


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    return prepare


def _sparse(name: str, size: int) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        with open(folder / name, "wb") as fh:
            fh.truncate(size)
    return prepare


def _chain(count: int) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        for i in range(count):
            (folder / f"c{i}.nn").write_text(f'use "c{i + 1}.nn"\nblock B{i}(n) = relu\n',
                                             encoding="utf-8")
        (folder / f"c{count}.nn").write_text("block Last(n) = relu\n", encoding="utf-8")
    return prepare


def _as_root(prepare: Callable[[Path], None], name: str) -> Callable[[Path], str]:
    def setup(folder: Path) -> str:
        prepare(folder)
        return str(folder / name)
    return setup


def _dir(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).mkdir()


def _link(target: str, name: str) -> Callable[[Path], None]:
    return lambda folder: os.symlink(target, folder / name)


def _both(*prepares: Callable[[Path], None]) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        for p in prepares:
            p(folder)
    return prepare


LONG_NAME = "a" * 10_000 + ".nn"
DEEP_NAME = "a/" * 3000 + "x.nn"

FILE_CASES = [
    # what a `use` line names
    FileCase("include_symlink_loop", _including("loop_a.nn", _symlink_loop)),
    FileCase("include_symlink_to_itself", _including("self.nn", _link("self.nn", "self.nn"))),
    FileCase("include_dangling_symlink", _including("gone.nn", _link("nowhere.nn", "gone.nn"))),
    FileCase("include_symlink_to_directory", _including("d.nn", _both(_dir("real"),
                                                                      _link("real", "d.nn")))),
    FileCase("include_nul_escape", _including("a\\x00b.nn")),
    FileCase("include_nul_byte", _raw_including(b"a\x00b.nn")),
    FileCase("include_newline_escape", _including("a\\nb.nn")),
    FileCase("include_dev_urandom", _including("/dev/urandom")),
    FileCase("include_dev_zero", _including("/dev/zero")),
    FileCase("include_dev_null", _including("/dev/null")),
    FileCase("include_dev_stdin", _including("/dev/stdin")),
    FileCase("include_proc_self_mem", _including("/proc/self/mem")),
    FileCase("include_proc_environ", _including("/proc/self/environ")),
    FileCase("include_fifo", _including("fifo.nn", _fifo)),
    FileCase("include_directory", _including("dir.nn", _dir("dir.nn"))),
    FileCase("include_dot", _including(".")),
    FileCase("include_empty_path", _including("")),
    FileCase("include_filesystem_root", _including("/")),
    FileCase("include_10000_char_path", _including(LONG_NAME)),
    FileCase("include_3000_deep_path", _including(DEEP_NAME)),
    FileCase("include_not_nn_file", _including("secret.txt", _write("secret.txt", SECRET + "\n")),
             secret=SECRET),
    FileCase("include_not_nn_file_outside", _including("../../../../../../../../etc/passwd"),
             secret="root:x:0:0"),
    FileCase("include_not_nn_valid_text", _including("blocks.txt",
                                                     _write("blocks.txt", "block B(n) = relu\n"))),
    FileCase("include_not_utf8", _including("bad.nn", _write("bad.nn", b"\xff\xfe\x00block \x80"))),
    FileCase("include_half_utf8_char", _including("half.nn", _write("half.nn", "block é"
                                                                    .encode()[:-1]))),
    FileCase("include_too_large", _including("big.nn", _sparse("big.nn", TOO_LARGE))),
    FileCase("include_chain_1000_files", _including("c0.nn", _chain(1000))),
    FileCase("include_itself", _including("main.nn")),
    # the spec path given on the command line
    FileCase("spec_symlink_loop", _as_root(_symlink_loop, "loop_a.nn")),
    FileCase("spec_fifo", _as_root(_fifo, "fifo.nn")),
    FileCase("spec_directory", _as_root(_dir("dir.nn"), "dir.nn")),
    FileCase("spec_dev_zero", lambda folder: "/dev/zero"),
    FileCase("spec_dev_urandom", lambda folder: "/dev/urandom"),
    FileCase("spec_dev_null", lambda folder: "/dev/null"),
    FileCase("spec_nul_in_path", lambda folder: str(folder / "a\x00b.nn")),
    FileCase("spec_10000_char_path", lambda folder: str(folder / LONG_NAME)),
    FileCase("spec_empty_path", lambda folder: ""),
    FileCase("spec_not_utf8", _as_root(_write("bad.nn", b"model \xff() {\n}\n"), "bad.nn")),
    FileCase("spec_too_large", _as_root(_sparse("big.nn", TOO_LARGE), "big.nn")),
    FileCase("spec_empty_file", _as_root(_write("empty.nn", b""), "empty.nn")),
]
