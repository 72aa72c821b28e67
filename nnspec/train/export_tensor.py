"""Whole weights from a tensor-parallel checkpoint (`parallel { tensor = N }`, DeepSpeed AutoTP).

Each tensor rank r saves its own model states (`mp_rank_0r_model_states.pt`, or under ZeRO-3 one
`zero_pp_rank_D_mp_rank_0r_model_states.pt` per data-parallel rank D) and, under ZeRO 1-3, its
optimizer shards: the split layers' shards, the replicated parameters whole. So each tensor rank's
weights are first consolidated on their own, as a one-rank checkpoint would be (its fp32 master
weights through DeepSpeed's `zero_to_fp32`, run on a view of the folder holding only that rank's
files; else its saved module), and then put together: AutoTP writes into every model-states
file, under `universal_checkpoint_info.affine_map`, how each split parameter's shards tile the
whole tensor (deepspeed/checkpoint/affine.py), and DeepSpeed's `ParamAffineMap.rebuild` follows
it, so no name pattern or spec is needed here. A parameter without a map is the same on every
rank and is taken from rank 0.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Callable

import torch

from nnspec.train.errors import TrainError
from nnspec.train.safeload import safe_load

MODEL_STATES = re.compile(r"^(?:zero_pp_rank_\d+_)?mp_rank_(\d+)_model_states\.pt$")


def is_tensor_parallel(folder: Path) -> bool:
    """Whether a DeepSpeed step folder holds more than one tensor rank's model states."""
    return any(m and m.group(1) != "00" for m in map(MODEL_STATES.match,
                                                        (p.name for p in folder.iterdir())))


def tensor_parallel_weights(folder: Path, with_masters: Callable[[dict], dict],
                            zero_fp32: Callable[[Path], dict]) -> dict[str, torch.Tensor]:
    """The whole state_dict of a tensor-parallel step folder. `with_masters` takes one rank's
    saved states to its module weights, `zero_fp32` consolidates a folder's ZeRO shards
    (export.py's two).

    Raises:
        TrainError: a tensor rank's files are missing, or its shards do not fit the map.
    """
    files: dict[int, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        m = MODEL_STATES.match(path.name)
        if m:
            files.setdefault(int(m.group(1)), []).append(path)
    first = safe_load(files[0][0])
    degree = first.get("mp_world_size", len(files))
    if sorted(files) != list(range(degree)):
        raise TrainError(f"{folder} holds model states of tensor ranks {sorted(files)}, not of "
                         f"all {degree}", "export an older checkpoint")
    sharded = any(folder.glob("*optim_states.pt"))
    ranks = {r: _rank_weights(folder, r, zero_fp32) if sharded else with_masters(
        safe_load(files[r][0])) for r in range(degree)}
    maps = (first.get("universal_checkpoint_info") or {}).get("affine_map", {}).get("params", {})
    out = {}
    for name, value in ranks[0].items():
        entry = maps.get(f"^{re.escape(name)}$")
        if entry is None:
            out[name] = value
            continue
        from deepspeed.checkpoint.affine import ParamAffineMap

        out[name] = ParamAffineMap.from_dict(entry).rebuild({r: ranks[r][name]
                                                             for r in range(degree)})
    return out


def _rank_weights(folder: Path, rank: int, zero_fp32: Callable[[Path], dict]) -> dict:
    """Tensor rank `rank`'s fp32 weights from its ZeRO shards: zero_to_fp32 reads every
    model-states and optimizer file of a folder, so it is given a folder of links to this
    rank's files only."""
    mine = re.compile(rf"(^|_)mp_rank_{rank:02d}_(model|optim)_states\.pt$")
    with tempfile.TemporaryDirectory(prefix="nnspec-tp-") as tmp:
        view = Path(tmp) / folder.name
        view.mkdir()
        for path in folder.iterdir():
            if mine.search(path.name):
                (view / path.name).symlink_to(path.resolve())
        return zero_fp32(view)
