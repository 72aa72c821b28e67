"""The `weights` section applied: checkpoint names and layouts -> the model's, and back.

Reading, each checkpoint key is dropped (a `drop` pattern matches it as written), else renamed
(every `rename` regex in order), then transposed when a `transpose` pattern matches its model
name. Writing applies the transposes again and the `export_rename` regexes. A checkpoint that
still does not fit the model is reported key by key (E0741: mis-shaped, missing, unexpected),
located at the weights section (or the model line), capped and counted like other diagnostics.
"""
from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import torch

from nnspec.lang.config import WeightsSpec
from nnspec.lang.diagnostics import Reporter
from nnspec.weights.files import read_checkpoint


def to_model(raw: dict[str, torch.Tensor], weights: WeightsSpec) -> dict[str, torch.Tensor]:
    """Checkpoint tensors by model name: drops, renames and transposes applied."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        if any(fnmatchcase(key, p) for p in weights.drop):
            continue
        name = _renamed(key, weights.rename)
        out[name] = _transposed(name, tensor, weights)
    return out


def from_model(state: dict[str, torch.Tensor], weights: WeightsSpec) -> dict[str, torch.Tensor]:
    """Model tensors by checkpoint name, as export writes them (own contiguous copies, so tied
    weights are separate tensors, which safetensors requires)."""
    return {_renamed(k, weights.export_rename): _transposed(k, v, weights).detach().clone()
            .contiguous() for k, v in state.items()}


def load_into(model: torch.nn.Module, path: str | Path, spec) -> torch.nn.Module:
    """Load a checkpoint into `model` (built from `spec`) through the spec's weights section.

    Raises:
        SpecError: keys that are missing, unexpected or mis-shaped (E0741).
        WeightsFileError, UnsafeCheckpoint: the file cannot be read, or safely.
    """
    mapped = to_model(read_checkpoint(path), spec.settings.weights)
    own = model.state_dict()
    reporter = Reporter()
    _report_misfit(mapped, own, _tied(model), spec, Path(path).name, reporter)
    reporter.check()
    with torch.no_grad():
        for key, tensor in mapped.items():
            own[key].copy_(tensor)
    return model


def _report_misfit(mapped, own, tied: dict[str, str], spec, source: str,
                   reporter: Reporter) -> None:
    span = spec.settings.section_spans.get("weights") or spec.ir.span
    for key in sorted(own.keys() & mapped.keys()):
        want, got = list(own[key].shape), list(mapped[key].shape)
        if want != got:
            hint = ("the checkpoint stores it transposed: add it to `transpose`"
                    if want == got[::-1] else "the model's parameters differ from the "
                    "checkpoint's (set them with --set)")
            reporter.error("E0741", f"weights: `{key}` has shape {want} in the model, {got} in "
                           f"{source}", span, hint)
    for key in sorted(own.keys() - mapped.keys()):
        if tied.get(key) in mapped:
            continue  # one tensor under two names: the other name brings it
        reporter.error("E0741", f"weights: `{key}` is missing from {source}", span,
                       "rename the checkpoint key that holds it (`rename`)")
    for key in sorted(mapped.keys() - own.keys()):
        reporter.error("E0741", f"weights: {source} holds `{key}`, which the model does not have",
                       span, "rename it onto a model key, or ignore it (`drop`)")


def _tied(model: torch.nn.Module) -> dict[str, str]:
    """key -> another key that holds the same tensor (a tied weight)."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        other = first.setdefault(id(p), name)
        if other != name:
            out[name] = other
            out.setdefault(other, name)
    return out


def _renamed(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def _transposed(name: str, tensor: torch.Tensor, weights: WeightsSpec) -> torch.Tensor:
    if tensor.dim() == 2 and any(fnmatchcase(name, p) for p in weights.transpose):
        return tensor.t().contiguous()
    return tensor
