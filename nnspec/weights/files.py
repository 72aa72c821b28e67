"""Reading checkpoints: a safetensors file, a torch state_dict file, or a Hugging Face folder.

A torch file is a pickle, so it is opened only by `safeload.safe_load` (the weights-only
unpickler): a file that names code is refused and nothing in it runs. A Hugging Face folder holds
`model.safetensors`, or shards listed by `model.safetensors.index.json`, or their
`pytorch_model.bin` counterparts (read the same safe way).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from nnspec.train.errors import TrainError
from nnspec.train.safeload import UnsafeCheckpoint, safe_load

FOLDER_FILES = ("model.safetensors.index.json", "model.safetensors",
                "pytorch_model.bin.index.json", "pytorch_model.bin")


class WeightsFileError(TrainError):
    """A checkpoint that cannot be read (missing, torn, not a state_dict): commands exit 2."""


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file or Hugging Face folder, by its checkpoint name.

    Raises:
        WeightsFileError: no such file, an unreadable one, or one that holds no state_dict.
        UnsafeCheckpoint: a torch file that holds more than tensors and plain values.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise WeightsFileError(f"--weights {path}: no such file or folder",
                               "give a .safetensors or .pt file, or a Hugging Face model folder")
    return _read_file(path)


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    for name in FOLDER_FILES:
        if (folder / name).is_file():
            if name.endswith(".index.json"):
                return _read_shards(folder, folder / name)
            return _read_file(folder / name)
    raise WeightsFileError(f"{folder}: a model folder holds one of {', '.join(FOLDER_FILES)}; "
                           "this one holds none", "save the model with save_pretrained")


def _read_shards(folder: Path, index: Path) -> dict[str, torch.Tensor]:
    """The shards an index names, each read once; the index's key -> file map is checked."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsFileError(f"{index}: not a shard index ({_first_line(err)})") from None
    out: dict[str, torch.Tensor] = {}
    for shard in shards:
        file = (folder / str(shard)).resolve()
        if folder.resolve() not in file.parents:
            raise WeightsFileError(f"{index}: shard `{shard}` lies outside {folder}")
        out.update(_read_file(file))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise WeightsFileError(f"{index}: `{missing[0]}` is not in the shard the index names "
                               f"({len(missing)} key{'s' if len(missing) > 1 else ''} missing)")
    return out


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own and OS errors
            raise WeightsFileError(f"{path}: not a readable safetensors file "
                                   f"({_first_line(err)})") from None
    try:
        obj = safe_load(path)
    except UnsafeCheckpoint:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load's many errors for torn or foreign files
        raise WeightsFileError(f"{path}: not a readable torch file ({_first_line(err)})") from None
    return _state_dict(obj, path)


def _state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in a torch file: itself, or under "state_dict" / "model" (training
    checkpoints of other tools); non-tensor entries are not weights and are left out."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsFileError(f"{path}: holds no state_dict (a dict of tensor names to tensors)",
                           "save `model.state_dict()`")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
