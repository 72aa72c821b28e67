"""What the torchvision spec tests share: a strict load of the reference's random weights with
nothing left at a constant, equal eval outputs, equal parameter counts, FLOPs against torch's
counter, and the line count that the spec must stay under."""
from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import torch

import nnspec


def randomise_constants(reference: torch.nn.Module) -> None:
    """Batch-norm statistics, affine terms and the zero-initialised biases made random, so that a
    dropped or misplaced one cannot hide behind its initial value."""
    with torch.no_grad():
        for k, v in reference.state_dict().items():
            if k.endswith(("running_mean", "bias")):
                v.copy_(torch.rand_like(v) - 0.5)
            elif k.endswith("running_var") or (k.endswith("weight") and v.dim() == 1):
                v.copy_(torch.rand_like(v) + 0.5)


def assert_matches(reference: torch.nn.Module, spec_path: str, size: int, params: int) -> None:
    """The spec at image size `size` has the reference's keys in its order, loads its weights
    strictly and computes its outputs in eval mode; both have `params` parameters."""
    reference.eval()
    spec = nnspec.load(spec_path, size=size)
    model = spec.build().eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)   # the same keys, in the same order
    assert ours == theirs
    randomise_constants(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == params


def assert_flops_match_counter(spec_path: str, size: int) -> None:
    """The FLOPs `nnspec check` reports are torch's count of the built model (per sample; torch
    counts a multiply-add as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load(spec_path, size=size)
    model = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()


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
