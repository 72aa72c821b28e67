"""Checkpoints of engine ddp: one folder per step, one file per rank, and the completion marker.

    checkpoints/step-00000120/rank0.pt, rank1.pt, ...   each rank's whole state
    checkpoints/step-00000120/nnspec.json               written last by rank 0 (engine, world)

A rank's file holds its model (the ranks' models differ between local SGD's averages), its
optimizer, the schedule, the loss scaler, its random streams, the hook's state (PowerSGD's error
feedback, warm-start matrices, iteration and random generator; post-local SGD's iteration), the
averager's step and the communication counts: everything a resumed run needs to continue bit for
bit. Files are written and read as the other checkpoints are (atomic saves, the weights-only
loader, every rank checking every file before any loads). `nnspec export-weights` reads the
ranks' models (`weights`): their average, which is the model the run means (one rank's when
they are equal, as they are without local SGD).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from nnspec.train.checkpoint import MARKER, atomic_save, capture_rng, restore_rng, tag
from nnspec.train.errors import TrainError

RANK_FILE = re.compile(r"^rank(\d+)\.pt$")


def save(backend, folder: Path, step: int, state: dict, keep: int) -> None:
    """Every rank writes its file; rank 0 then writes the marker and drops old checkpoints."""
    from nnspec.train.distributed import finish_save

    path = folder / tag(step)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save(_rank_state(backend, state["window_loss"]), path / f"rank{backend.rank}.pt")
    finish_save(path, {"step": step, "state": state, "engine": "ddp",
                       "world_size": backend.world}, keep, backend.is_main)


def load(backend, folder: Path) -> dict | None:
    """Restore the newest complete checkpoint into `backend`; its loop state, or None."""
    from nnspec.train.distributed import _verify_on_every_rank, newest_checkpoint
    from nnspec.train.safeload import safe_load

    choice = newest_checkpoint(folder, backend.is_main)
    if choice is None:
        return None
    marker = json.loads((folder / choice / MARKER).read_text())
    if marker.get("engine") != "ddp" or marker.get("world_size") != backend.world:
        saved = (f"engine ddp on {marker.get('world_size')} ranks" if marker.get("engine") == "ddp"
                 else "engine deepspeed")
        raise TrainError(f"checkpoint {folder / choice} was saved by {saved}; this run is engine "
                         f"ddp on {backend.world}", "resume with the settings and number of "
                         "processes it was saved with")
    _verify_on_every_rank(folder / choice)
    mine = safe_load(folder / choice / f"rank{backend.rank}.pt")
    try:
        _restore(backend, mine)
    except (RuntimeError, ValueError, KeyError) as err:
        raise TrainError(f"the checkpoint in {folder} does not fit this model or optimizer "
                         f"({str(err).splitlines()[0]})", "resume with the settings it was "
                         "saved with, or start afresh") from None
    return dict(marker["state"], window_loss=mine["window_loss"])


def _rank_state(b, window_loss: float) -> dict:
    return {"model": b.model.state_dict(), "optimizer": b.optimizer.state_dict(),
            "scheduler": b.scheduler.state_dict() if b.scheduler else None,
            "scaler": b.scaler.state_dict() if b.scaler else None,
            "powersgd": _powersgd_state(b.powersgd) if b.powersgd is not None else None,
            "post_local_iter": b.post_local.iter if b.post_local is not None else None,
            "averager_step": b.averager.step if b.averager is not None else None,
            "comm": b.comm.state_dict(), "updates": b.updates,
            "rng": capture_rng(), "window_loss": window_loss}


def _restore(b, s: dict) -> None:
    b.model.load_state_dict(s["model"])
    b.optimizer.load_state_dict(s["optimizer"])
    if b.scheduler is not None and s["scheduler"] is not None:
        b.scheduler.load_state_dict(s["scheduler"])
    if b.scaler is not None and s["scaler"]:
        b.scaler.load_state_dict(s["scaler"])
    for name, key in (("powersgd", "powersgd"), ("post_local", "post_local_iter"),
                      ("averager", "averager_step")):
        if (getattr(b, name) is None) != (s[key] is None):
            raise ValueError(f"it was saved {'with' if s[key] is not None else 'without'} "
                             f"{name.replace('_', '-')} state")
    if b.powersgd is not None:
        _load_powersgd(b.powersgd, s["powersgd"])
    if b.post_local is not None:
        b.post_local.iter = int(s["post_local_iter"])
    if b.averager is not None:
        b.averager.step = int(s["averager_step"])
    b.comm.load_state_dict(s["comm"])
    b.updates = int(s["updates"])
    restore_rng(s["rng"])


def _powersgd_state(st) -> dict:
    """PowerSGDState's internal state as tensors and plain values (weights-only loadable); its
    numpy generator draws the random projections of every later fresh start."""
    kind, keys, pos, has_gauss, gauss = st.rng.get_state()
    return {"iter": st.iter, "error": dict(st.error_dict), "p": dict(st.p_memory_dict),
            "q": dict(st.q_memory_dict),
            "rng": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "numel": (st.total_numel_before_compression, st.total_numel_after_compression,
                      st.next_stats_report)}


def _load_powersgd(st, s: dict) -> None:
    st.iter = int(s["iter"])
    st.error_dict, st.p_memory_dict, st.q_memory_dict = dict(s["error"]), dict(s["p"]), dict(s["q"])
    kind, keys, pos, has_gauss, gauss = s["rng"]
    st.rng.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    (st.total_numel_before_compression, st.total_numel_after_compression,
     st.next_stats_report) = s["numel"]


# ---- export ----------------------------------------------------------------------------------

def is_ddp_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("engine") == "ddp"
    except (OSError, ValueError, AttributeError):
        return False


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model of a ddp checkpoint: rank 0's when every rank holds the same, else the ranks'
    average (each divided by the world size and summed in rank order, as the run averages).

    Raises:
        UnsafeCheckpoint: a rank's file holds more than weights (safeload.py).
        TrainError: a rank's file is missing, torn or not of this layout.
    """
    from nnspec.train.safeload import UnsafeCheckpoint, safe_load

    files = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := RANK_FILE.match(p.name)))
    world = json.loads((folder / MARKER).read_text()).get("world_size")
    if not files or [r for r, _ in files] != list(range(world or 0)):
        raise TrainError(f"{folder} does not hold one file per rank (rank0.pt ... "
                         f"rank{(world or 1) - 1}.pt)", "export an older checkpoint")
    models = []
    for _, path in files:
        try:
            models.append(safe_load(path)["model"])
        except UnsafeCheckpoint:
            raise
        except Exception as err:  # noqa: BLE001 - torn or foreign
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrainError(f"{path} is damaged ({first})", "export an older checkpoint") \
                from None
    first = models[0]
    if all(torch.equal(m[k], first[k]) for m in models[1:] for k in first):
        return first
    out = {}
    for k, v in first.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        total = v / len(models)
        for m in models[1:]:
            total = total + m[k] / len(models)
        out[k] = total
    return out
