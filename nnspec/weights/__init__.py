"""Weights in and out: read a checkpoint (safetensors, a torch state_dict, a Hugging Face
folder), map its names and layouts onto a spec's model as the spec's `weights` section declares,
and write a Hugging Face style folder back.

- `files`: reading checkpoint files and folders (torch files only through train/safeload.py).
- `mapping`: the section's renames, drops and transposes, both ways, and the located
  diagnostics of a checkpoint that does not fit the model.
- `hf`: writing config.json + model.safetensors.
"""
from nnspec.weights.files import WeightsFileError, read_checkpoint
from nnspec.weights.mapping import from_model, load_into, to_model

__all__ = ["WeightsFileError", "read_checkpoint", "from_model", "load_into", "to_model"]
