"""Unstructured and N:M pruning: masks over weights, chosen by magnitude or at random, one-shot or
raised step by step along Zhu & Gupta's cubic schedule while the model fine-tunes.

Masks are plain tensors kept beside the model (not torch.nn.utils.prune's reparametrization), so
the model stays an ordinary module with ordinary state_dict names; `apply` zeroes the pruned
weights after every optimizer step.
"""
from __future__ import annotations

import torch
from torch import nn

from nnspec.compress.checked import Prune

Masks = dict[str, torch.Tensor]   # parameter name -> bool mask (True = kept)


def pruned_params(model: nn.Module, layers: tuple[str, ...]) -> dict[str, nn.Parameter]:
    """The weight matrices (2-d or more) of the named layers, by parameter name."""
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        for pname, p in modules[name].named_parameters(recurse=False):
            if pname.startswith("weight") and p.dim() >= 2:
                out[f"{name}.{pname}"] = p
    return out


def cubic_sparsity(final: float, step: int, start: int, end: int) -> float:
    """Zhu & Gupta (2017): s_t = s_f * (1 - (1 - (t - t0) / (t1 - t0))^3), 0 before t0."""
    if step <= start:
        return 0.0
    frac = min(1.0, (step - start) / (end - start))
    return final * (1.0 - (1.0 - frac) ** 3)


def compute_masks(directive: Prune, params: dict[str, torch.Tensor], amount: float,
                  generator: torch.Generator | None = None) -> Masks:
    """Masks removing `amount` of the weights (per layer, or one threshold for all)."""
    if directive.method == "nm":
        return {name: nm_mask(p.detach(), directive.n, directive.m) for name, p in params.items()}
    scores = {name: (p.detach().abs() if directive.method == "magnitude"
                     else torch.rand(p.shape, generator=generator)) for name, p in params.items()}
    if directive.scope == "global":
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = int(round(amount * flat.numel()))
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        threshold = flat.kthvalue(k).values
        return {name: s > threshold for name, s in scores.items()}
    return {name: _keep_top(s, amount) for name, s in scores.items()}


def _keep_top(score: torch.Tensor, amount: float) -> torch.Tensor:
    k = int(round(amount * score.numel()))
    mask = torch.ones(score.numel(), dtype=torch.bool)
    if k:
        mask[score.flatten().argsort()[:k]] = False
    return mask.view(score.shape)


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest of every m consecutive input weights of each output (2:4 sparsity)."""
    w = weight.reshape(weight.shape[0], -1)
    groups = w.abs().reshape(w.shape[0], -1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(weight.shape)


@torch.no_grad()
def apply(params: dict[str, torch.Tensor], masks: Masks) -> None:
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].dtype))


class Pruner:
    """Applies a model's pruning directives: one-shot at once, gradual ones as steps go by."""

    def __init__(self, model: nn.Module, directives: tuple[Prune, ...], seed: int = 0):
        self.model = model
        self.directives = directives
        self.params = [pruned_params(model, d.layers) for d in directives]
        self.masks: list[Masks] = [{} for _ in directives]
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def gradual(self) -> bool:
        return any(d.schedule[0] == "cubic" for d in self.directives)

    @property
    def last_step(self) -> int:
        """The step by which every schedule has reached its final sparsity."""
        return max([d.schedule[2] for d in self.directives if d.schedule[0] == "cubic"],
                   default=0)

    def start(self) -> None:
        """Prune the one-shot directives now (and gradual ones at their step 0)."""
        self.update(0, force=True)

    def update(self, step: int, force: bool = False) -> None:
        """Recompute the masks due at this optimizer step, then zero the pruned weights."""
        for i, d in enumerate(self.directives):
            if d.schedule[0] == "cubic":
                _, start, end, every = d.schedule
                if force or (step <= end and (step - start) % every == 0) or step == end:
                    amount = cubic_sparsity(d.amount, step, start, end)
                    self.masks[i] = compute_masks(d, self.params[i], amount, self.generator)
            elif force:
                self.masks[i] = compute_masks(d, self.params[i], d.amount, self.generator)
            apply(self.params[i], self.masks[i])

    def finish(self) -> None:
        """Reach every directive's final sparsity (a schedule longer than the fine-tuning)."""
        for i, d in enumerate(self.directives):
            self.masks[i] = compute_masks(d, self.params[i], d.amount, self.generator)
            apply(self.params[i], self.masks[i])

    def sparsity(self) -> float:
        total = sum(p.numel() for ps in self.params for p in ps.values())
        zeros = sum(int((p == 0).sum()) for ps in self.params for p in ps.values())
        return zeros / max(total, 1)
