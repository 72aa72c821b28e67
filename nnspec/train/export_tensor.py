"""Whole weights from a tensor-parallel checkpoint (`parallel { tensor = N }`, DeepSpeed AutoTP).

Each tensor rank saves its own `mp_rank_XX_model_states.pt`: the split layers' shards, the
replicated parameters whole. AutoTP writes into every one of them, under
`universal_checkpoint_info.affine_map`, how each split parameter's shards tile the whole tensor
(deepspeed/checkpoint/affine.py); DeepSpeed's `ParamAffineMap.rebuild` puts them back together,
so no name pattern or spec is needed here. A parameter without a map is the same on every rank
and is taken from rank 0.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from nnspec.train.errors import TrainError
from nnspec.train.safeload import safe_load

MODEL_STATES = re.compile(r"^mp_rank_(\d+)_model_states\.pt$")


def is_tensor_parallel(folder: Path) -> bool:
    """Whether a DeepSpeed step folder holds more than one tensor rank's model states."""
    return (folder / "mp_rank_01_model_states.pt").is_file()


def tensor_parallel_weights(folder: Path, with_masters) -> dict[str, torch.Tensor]:
    """The whole state_dict of a tensor-parallel step folder. `with_masters` takes one rank's
    saved states to its module weights (export.py's, which prefers fp32 master weights).

    Raises:
        TrainError: a rank's file is missing, or a split parameter has no map to rebuild it.
    """
    files = {int(m.group(1)): p for p in folder.iterdir() if (m := MODEL_STATES.match(p.name))}
    states = {r: safe_load(files[r]) for r in sorted(files)}
    degree = states[0].get("mp_world_size", len(states))
    if sorted(states) != list(range(degree)):
        raise TrainError(f"{folder} holds model states of tensor ranks {sorted(states)}, not of "
                         f"all {degree}", "export an older checkpoint")
    maps = (states[0].get("universal_checkpoint_info") or {}).get("affine_map", {}).get("params",
                                                                                          {})
    modules = {r: with_masters(s) for r, s in states.items()}
    out = {}
    for name, value in modules[0].items():
        entry = maps.get(f"^{re.escape(name)}$")
        if entry is None:
            out[name] = value
            continue
        from deepspeed.checkpoint.affine import ParamAffineMap

        out[name] = ParamAffineMap.from_dict(entry).rebuild(
            {r: modules[r][name] for r in range(degree)})
    return out
