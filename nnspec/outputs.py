"""Where commands write: output paths checked before any work, and outputs that appear whole.

Every command that writes a folder (`compile -o`, `compress -o`) builds it complete in a staging
folder beside the destination and moves it into place in one rename. A destination that already
holds an earlier output of the same command is swapped out in one step (Linux renameat2 with
RENAME_EXCHANGE, else two renames) and then removed; a destination holding anything nnspec did
not write is refused, never deleted. A marker file in each output folder says which command
wrote it and which files are its own.

Files get the usual modes: 0666 less the umask (0777 for executables and folders), not the 0600
of `tempfile.mkstemp`.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Mapping

MARKER = ".nnspec-output.json"  # in each output folder: {"kind": ..., "files": [...]}
RETRIES = 20  # another process may take the destination between our look and our rename


class OutputError(ValueError):
    """An output path that cannot be used; the message names the flag and the path."""


def umask() -> int:
    """The process umask (read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(executable: bool = False) -> int:
    return (0o777 if executable else 0o666) & ~umask()


# ---- checking a path before any work -----------------------------------------------------------

def check_folder(path: str, flag: str, replaced: bool = True) -> Path:
    """A folder path a command may create or fill; OutputError for every path that cannot be one.

    Refused: an empty path (it would mean the current folder), an existing file or device, a
    dangling symlink, a path below a file, and for a folder that is `replaced` whole any symlink
    (the rename would replace the link, not write where it points).
    """
    target = _nonempty(path, flag)
    if target.is_symlink() and not target.exists():
        raise OutputError(f"{flag} {path}: is a symbolic link to nothing")
    if target.is_symlink() and replaced:
        raise OutputError(f"{flag} {path}: is a symbolic link; name the folder itself")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a folder")
    _check_parents(target, flag, path)
    return target


def check_file(path: str, flag: str) -> Path:
    """A file path a command may create or replace: not a folder, device or symlink, not below a
    file."""
    target = _nonempty(path, flag)
    if target.is_symlink():
        raise OutputError(f"{flag} {path}: is a symbolic link; name the file itself")
    if target.exists() and not target.is_file():
        what = "a folder" if target.is_dir() else "not a regular file"
        raise OutputError(f"{flag} {path}: is {what}; name a file to write")
    _check_parents(target, flag, path)
    return target


def _nonempty(path: str, flag: str) -> Path:
    if not str(path).strip():
        raise OutputError(f"{flag} needs a path, got an empty one")
    if "\0" in str(path):
        raise OutputError(f"{flag}: the path holds a NUL character")
    return Path(path)


def _check_parents(target: Path, flag: str, path: str) -> None:
    for parent in target.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and parent == target.absolute().parent:
                raise OutputError(f"{flag} {path}: cannot write in {parent}")
            return


# ---- writing a folder whole --------------------------------------------------------------------

def write_folder(dest: Path, files: Mapping[str, bytes | str], kind: str,
                 executable: frozenset[str] = frozenset()) -> None:
    """Write `files` as the folder `dest`, all at once.

    The files go into a staging folder beside `dest`, which is then renamed onto `dest`: the
    folder a reader sees is always one whole output, never a mix of two (also when two
    processes race). An existing `dest` must be empty or an earlier output of the same `kind`
    holding only its own files; the earlier output is removed after the swap.

    Raises:
        OutputError: `dest` holds files nnspec did not write, or another command's output.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = _stage(dest, files, kind, executable)
    placed = False
    try:
        for _ in range(RETRIES):
            placed = _place(stage, dest, kind)
            if placed:
                return
        raise OutputError(f"{dest}: other processes keep replacing it; try again")
    finally:
        if not placed and stage.exists():  # still only our staged files
            shutil.rmtree(stage, ignore_errors=True)


def _stage(dest: Path, files: Mapping[str, bytes | str], kind: str,
           executable: frozenset[str]) -> Path:
    _sweep_stale(dest)
    stage = Path(tempfile.mkdtemp(prefix=f"{_stage_prefix(dest)}{os.getpid()}-",
                                  dir=dest.parent))
    try:
        os.chmod(stage, file_mode(executable=True))
        for name, data in files.items():
            _write_file(stage / name, data, name in executable)
        marker = {"kind": kind, "files": sorted(files)}
        _write_file(stage / MARKER, json.dumps(marker, indent=2) + "\n", False)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def _stage_prefix(dest: Path) -> str:
    return f".{dest.name}.nnspec-"


def _sweep_stale(dest: Path) -> None:
    """Remove staging folders beside `dest` left by a process that was killed (its pid is in the
    name and no longer runs): they are nnspec's own temporary folders, never a user's."""
    prefix = _stage_prefix(dest)
    for entry in os.listdir(dest.parent):
        rest = entry[len(prefix):] if entry.startswith(prefix) else ""
        pid = rest.split("-")[1] if rest.startswith("old-") else rest.split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(dest.parent / entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_file(path: Path, data: bytes | str, executable: bool) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if executable else 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())


def _place(stage: Path, dest: Path, kind: str) -> bool:
    """One try at moving `stage` to `dest`; False when `dest` changed under us (try again)."""
    try:
        os.rename(stage, dest)  # onto a missing or empty folder: done in one step
        _fsync_dir(dest.parent)
        return True
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
    if not dest.is_dir() or dest.is_symlink():
        raise OutputError(f"{dest} exists and is not a folder")
    own = owned_files(dest, kind)
    if own is None:
        raise OutputError(f"{dest} holds files nnspec did not write (or another command's "
                          "output); nnspec never deletes those: choose another folder, or "
                          "empty it")
    old = _swap_in(stage, dest)
    if old is None:
        return False
    _remove_output(old, kind)
    if old.exists():  # someone added a file after our look: keep it, under a name to find
        kept = Path(tempfile.mkdtemp(prefix=f"{dest.name}.kept-", dir=dest.parent))
        os.rename(old, kept)
        print(f"nnspec: warning: {kept} holds files found in the earlier {dest}",
              file=sys.stderr)
    _fsync_dir(dest.parent)
    return True


def owned_files(folder: Path, kind: str) -> list[str] | None:
    """The entries of `folder` if it is an output of `kind` holding only its own files, else
    None."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        entries = set(os.listdir(folder))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("kind") != kind:
        return None
    own = set(marker.get("files") or ()) | {MARKER}
    return sorted(entries) if entries <= own else None


def _swap_in(stage: Path, dest: Path) -> Path | None:
    """Exchange `stage` and `dest` atomically; returns where the old output now is (None when
    `dest` vanished, so the caller tries the plain rename again)."""
    if _rename_exchange(stage, dest):
        return stage
    aside = Path(tempfile.mkdtemp(prefix=f"{_stage_prefix(dest)}old-{os.getpid()}-",
                                  dir=dest.parent))
    try:
        os.rename(dest, aside)  # aside is empty, so this replaces it
    except FileNotFoundError:
        aside.rmdir()
        return None
    try:
        os.rename(stage, dest)
    except OSError:  # another process put its output there first: ours is dropped, theirs stays
        shutil.rmtree(stage, ignore_errors=True)
    return aside


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swap two paths in one step. False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOENT):
        return False  # a file system without it, or `b` gone: the caller's fallback handles both
    raise OSError(code, os.strerror(code), str(b))


def _remove_output(folder: Path, kind: str) -> None:
    """Remove an earlier output moved aside; only the files its marker lists, and the folder only
    if that empties it (someone may have added a file since we looked)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        names = set(marker.get("files") or ()) if marker.get("kind") == kind else set()
    except (OSError, ValueError, AttributeError):
        names = set()
    for name in sorted(names) + [MARKER]:
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass  # a file nnspec did not write: left where it is


# ---- writing one file whole --------------------------------------------------------------------

def replace_file(dest: Path, write, mode: int | None = None) -> None:
    """Call `write(tmp_path)` to write a temporary file beside `dest`, then rename it onto `dest`
    with the usual mode (or `mode`: a file rewritten in place keeps its own); the temporary file
    is removed if anything fails."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode() if mode is None else mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    _fsync_dir(dest.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["OutputError", "check_folder", "check_file", "write_folder", "replace_file",
           "owned_files", "file_mode", "MARKER"]
