"""Checkpoint files are unpickled only after they load with `torch.load(weights_only=True)`.

A `.pt` file is a pickle: loaded with `weights_only=False`, as DeepSpeed's `engine.load_checkpoint`
and `zero_to_fp32` load it, a crafted file runs any function it names (`os.system`, ...) before
anything can look at what it holds. The weights-only unpickler rebuilds tensors, containers and
plain values, and only the classes allow-listed here; anything else it refuses without calling it.

So every loader in nnspec goes through this module: our own loaders take `safe_load`'s result, and
before a file reaches DeepSpeed, `verify` (or `verify_folder`) has loaded it with the weights-only
unpickler; a file it refuses raises `UnsafeCheckpoint`, naming the file, and nothing is run.

DeepSpeed's checkpoints hold four of its own classes, found by saving checkpoints of every kind
(ZeRO 0-3, bf16, optimizer offload, pipeline layers) and listing what each file needs with
`torch.serialization.get_unsafe_globals_in_checkpoint`: the ZeRO optimizers' loss scaler (static,
or dynamic under fp16 on GPUs), the ZeRO stage enum, and the fragment addresses of ZeRO 1/2
(tests/train/test_safe_load.py checks every file of such checkpoints). Their constructors only
store the values they are given.
"""
from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import TrainError

DEEPSPEED_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class UnsafeCheckpoint(TrainError):
    """A checkpoint file that the weights-only unpickler refuses: unpickling it could run code.
    Commands exit 2 on it; nothing is loaded from the checkpoint and nothing is written."""


def safe_load(path: str | Path, mmap: bool = False) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`, DeepSpeed's own types allowed.

    Args:
        path: a file written by torch.save.
        mmap: map the tensors' storages instead of reading them (files in torch's zip format;
            others are read whole), for a check whose result is thrown away.

    Raises:
        UnsafeCheckpoint: the file names anything else (a function, a foreign class).
        Exception: whatever torch.load raises for a torn, empty or foreign file: the caller
            reports the file as damaged, as before.
    """
    path = Path(path)
    with torch.serialization.safe_globals(_deepspeed_types_in(path)):
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as err:
                if not mmap or "mmap can only be used" not in str(err):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # torch raises UnpicklingError when the weights-only unpickler refuses what the
            # pickle asks for; a torn zip or an empty file fails with other errors
            raise _refusal(path, err) from None


def verify(*paths: str | Path) -> None:
    """Each file loads with the weights-only unpickler, or UnsafeCheckpoint names it; call it
    before handing the files to a loader that unpickles (DeepSpeed's). Torn files raise what
    torch.load raises."""
    for path in map(Path, paths):
        if not path.is_file():  # a FIFO or a device would hang or never end the read
            raise UnsafeCheckpoint(f"refusing to load {path}: it is not a regular file",
                                   "a checkpoint holds only the files `nnspec train` wrote")
        safe_load(path, mmap=True)


def verify_folder(folder: str | Path) -> None:
    """`verify` every torch file of a checkpoint folder: everything DeepSpeed's loaders open
    (`*model_states.pt`, `*optim_states.pt`, pipeline `layer_*` files) and our `rank*.pt`."""
    verify(*sorted(Path(folder).glob("*.pt")))


def _deepspeed_types_in(path: Path) -> list[type]:
    """The allow-listed DeepSpeed classes this file names. Only they are imported (importing
    DeepSpeed takes seconds, and one-process checkpoints never need it); a file in the legacy
    format, or torn, cannot be listed and gets none."""
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the weights-only load decides
        return []
    found = []
    for name in DEEPSPEED_TYPES:
        if name in names:
            module, _, attr = name.rpartition(".")
            found.append(getattr(importlib.import_module(module), attr))
    return found


def _refusal(path: Path, err: BaseException) -> UnsafeCheckpoint:
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
                 if n not in DEEPSPEED_TYPES]
    except Exception:  # noqa: BLE001 - a legacy-format or bare pickle file cannot be listed:
        names = re.findall(r"GLOBAL ([\w.]+)", str(err))[:1]  # the unpickler's first refusal
    what = f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" if names else ""
    return UnsafeCheckpoint(
        f"refusing to load {path}: it holds more than tensors and plain values{what}, and "
        "unpickling it could run code",
        "nnspec and DeepSpeed checkpoints hold only tensors, plain values and DeepSpeed's own "
        "loss-scaler and ZeRO types; use a checkpoint written by `nnspec train` that you trust")


__all__ = ["UnsafeCheckpoint", "safe_load", "verify", "verify_folder", "DEEPSPEED_TYPES"]
