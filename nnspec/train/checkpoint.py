"""Checkpoints that survive a kill: written to a temporary name, flushed, then renamed in place.

A one-process checkpoint is one file, `checkpoints/step-00000120.pt`, holding the model,
optimizer, scheduler, RNG and loop state; DeepSpeed checkpoints are folders of the same name (see
distributed.py). A kill during a save leaves at most a stray temporary file, which is ignored,
and the previous checkpoint stays the latest.
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnspec.outputs import replace_file
from nnspec.train.safeload import UnsafeCheckpoint, safe_load

log = logging.getLogger("nnspec.train")
NAME = re.compile(r"^step-(\d{8,})(\.pt)?$")
MARKER = "nnspec.json"  # written last into a checkpoint folder, with the sizes of its files


def tag(step: int) -> str:
    return f"step-{step:08d}"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename it onto `path`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    replace_file(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def capture_rng() -> dict[str, Any]:
    """Every random state training draws from, as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def steps_in(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in a folder, newest first (temporary files ignored)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name))]
    return sorted(found, reverse=True)


def manifest(folder: Path) -> dict[str, int]:
    """The size of every file of a checkpoint folder but its marker, to catch torn files later."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())
            if p.is_file() and p.name != MARKER and not p.name.startswith(".")}


def is_complete(folder: Path) -> bool:
    """A checkpoint folder whose save finished: its marker is there, and every file it lists
    has the size it had then (markers without a list are trusted)."""
    try:
        files = json.loads((folder / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return False
    if files is None:
        return True
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            log.warning("checkpoint %s is damaged (%s is missing or torn); skipping it",
                        folder, name)
            return False
    return True


def complete_folders(folder: Path) -> list[Path]:
    """The checkpoint folders in `folder` whose saves finished, newest first."""
    return [p for _, p in steps_in(folder) if p.is_dir() and is_complete(p)]


class LocalCheckpoints:
    """The checkpoints of a one-process run: save, keep the newest K, load the latest good one."""

    def __init__(self, folder: Path, keep: int):
        self.folder = folder
        self.keep = keep

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{tag(step)}.pt"
        atomic_save(payload, path)
        for _, old in steps_in(self.folder)[self.keep:]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; a damaged one is skipped with a warning.

        Raises:
            UnsafeCheckpoint: a file holds more than weights (safeload.py): a crafted file is
                refused, not passed over for an older one.
        """
        for step, path in steps_in(self.folder):
            try:
                return safe_load(path)
            except UnsafeCheckpoint:
                raise
            except Exception as err:  # noqa: BLE001 - a torn or foreign file: try the previous
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path, err)
        return None

    def clear(self) -> None:
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
