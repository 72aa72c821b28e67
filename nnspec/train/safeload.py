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
import io
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from nnspec.train.errors import TrainError

DEEPSPEED_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)

# what torch's weights-only unpickler says when a pickle names something it does not allow
REFUSED = re.compile(r"GLOBAL|call reduce for|create new object|Can only build")
CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


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
        UnsafeCheckpoint: the file names anything else (a function, a foreign class), or is
            not a regular file (a FIFO or a device would hang the read or never end it).
        Exception: whatever torch.load raises for a torn, empty or foreign file: the caller
            reports the file as damaged, as before.
    """
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):  # a folder fails as before
        raise UnsafeCheckpoint(f"refusing to load {path}: it is not a regular file",
                               "a checkpoint holds only the files `nnspec train` wrote")
    with torch.serialization.safe_globals(_deepspeed_types_in(path)):
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as err:
                if not mmap or "mmap can only be used" not in str(err):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # the unpickler refused a function or class the pickle names, which is what a
            # crafted file needs to run code, or stopped early on an opcode it does not know
            # before such a name (a bare pickle's FRAME); other files it stops on are junk,
            # damaged as a torn zip or an empty file is
            if REFUSED.search(str(err)) or _code_in(path)[0]:
                raise _refusal(path) from None
            raise


def verify(*paths: str | Path) -> None:
    """Each file loads with the weights-only unpickler, or UnsafeCheckpoint names it; call it
    before handing the files to a loader that unpickles (DeepSpeed's). Torn files raise what
    torch.load raises."""
    for path in paths:
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


def _code_in(path: Path) -> tuple[bool, list[str]]:
    """(whether the pickles in a file import or call anything, the functions and classes they
    name), read with pickletools, which only parses. The pickles: a bare pickle's, the several
    of torch's legacy format, or the data.pkl of its zip format. A file crafted to run code
    names what it calls; a torn file or one of junk does not."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                member = next(n for n in z.namelist() if n.endswith("data.pkl"))
                data = io.BytesIO(z.read(member))
        else:
            data = io.BytesIO(path.read_bytes())
    except (OSError, StopIteration, zipfile.BadZipFile):
        return False, []
    calls, names, strings = False, [], []
    try:
        while data.tell() < len(data.getbuffer()):  # a legacy file: several pickles in a row
            for op, arg, _ in pickletools.genops(data):
                calls = calls or op.name in CODE_OPCODES
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name in ("GLOBAL", "INST"):
                    names.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
    except Exception:  # noqa: BLE001 - the storages' raw bytes after the pickles, or junk
        pass
    allowed = _allowed_names()
    return calls, [n for n in dict.fromkeys(names) if n not in allowed
                   and not (n.startswith("torch.") and n.endswith("Storage"))]


def _allowed_names() -> set[str]:
    """What the weights-only unpickler allows (storages aside), to name only the rest in a
    refusal: torch's own list, read from a private function (if it moves, a refusal names
    more), and DeepSpeed's types."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError, TypeError):
        allowed = set()
    return allowed | set(DEEPSPEED_TYPES)


def _refusal(path: Path) -> UnsafeCheckpoint:
    names = _code_in(path)[1]
    what = f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" if names else ""
    return UnsafeCheckpoint(
        f"refusing to load {path}: it holds more than tensors and plain values{what}, and "
        "unpickling it could run code",
        "nnspec and DeepSpeed checkpoints hold only tensors, plain values and DeepSpeed's own "
        "loss-scaler and ZeRO types; use a checkpoint written by `nnspec train` that you trust")


__all__ = ["UnsafeCheckpoint", "safe_load", "verify", "verify_folder", "DEEPSPEED_TYPES"]
