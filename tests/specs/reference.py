"""What every test of a shipped spec against its reference model checks the same way."""
from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import torch


def assert_same_state_keys(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    """The same state_dict keys, in the same order, with the same shapes: what a strict
    `load_state_dict` needs, and what a checkpoint written by one reads as in the other."""
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


def code_lines(text: str) -> int:
    """Non-blank lines that are not comments."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def definition_lines(module: ModuleType, start: str, end: str) -> int:
    """Code lines of a reference module's source from `start` up to `end`, docstrings left out."""
    source = re.sub(r'"""[\s\S]*?"""', "", Path(module.__file__).read_text())
    return code_lines(source[source.index(start):source.index(end)])
