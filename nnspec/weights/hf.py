"""Writing a Hugging Face style folder: config.json (the weights section's hf_config with the
model's parameter values) and model.safetensors (names and layouts mapped back through the
section), which transformers' `from_pretrained(folder)` loads."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from nnspec.outputs import write_folder
from nnspec.train.errors import TrainError
from nnspec.weights.mapping import from_model

KIND = "hf-weights"  # the output marker's kind: a later export may replace this folder whole


def hf_folder_files(state: dict[str, torch.Tensor], spec) -> dict[str, bytes | str]:
    """{"config.json": ..., "model.safetensors": ...} of a model's state_dict.

    Raises:
        TrainError: the spec declares no `hf_config` in its weights section.
    """
    config = spec.hf_config
    if config is None:
        raise TrainError(f"{spec.name} declares no Hugging Face counterpart",
                         "add `hf_config = MODEL_TYPE(key=parameter, ...)` and `hf_architecture` "
                         "to its weights section")
    from safetensors.torch import save
    tensors = from_model(state, spec.settings.weights)
    return {"config.json": json.dumps({**config, "torch_dtype": "float32"}, indent=2,
                                      sort_keys=True) + "\n",
            "model.safetensors": save(tensors, metadata={"format": "pt"})}


def write_hf_folder(state: dict[str, torch.Tensor], spec, folder: str | Path) -> Path:
    """Write the folder whole (outputs.write_folder); returns it."""
    folder = Path(folder)
    write_folder(folder, hf_folder_files(state, spec), KIND)
    return folder
