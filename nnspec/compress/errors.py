"""Errors of a compression run, and loading weights into a model with a clear error."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from nnspec.train.safeload import UnsafeCheckpoint, safe_load


class CompressError(Exception):
    """A compression that cannot run (a missing file, weights that do not fit)."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message, self.help = message, help

    def render(self) -> str:
        return f"error: {self.message}" + (f"\nhelp: {self.help}" if self.help else "")


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a .safetensors (or torch .pt state_dict) file strictly; CompressError if it does not
    fit, UnsafeCheckpoint (exit 2) if a .pt file holds more than weights (train/safeload.py)."""
    path = Path(path)
    if not path.is_file():
        raise CompressError(f"no such weights file: {path}",
                            "train the model first (nnspec train), or leave out --weights to "
                            "let nnspec compress train it")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = safe_load(path)
        model.load_state_dict(state, strict=True)
    except UnsafeCheckpoint:  # a file that could run code is refused, not called ill-fitting
        raise
    except Exception as err:  # safetensors, pickle and shape errors all mean "does not fit"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompressError(f"{path} does not fit the model: {first}",
                            "use weights saved from this spec (nnspec train writes "
                            "model.safetensors)") from None
