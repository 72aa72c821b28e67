"""Few labels and a transfer set: the setting where distillation pays.

A teacher trained on all the labels exists; the student gets only a fraction of them
(`labels=0.1`), plus, with `transfer = unlabelled`, the rest of the training inputs with their
labels unused, which the teacher labels with its soft targets. The student trained alone gets the
same labelled samples in the same order and as many steps, so the two differ only by the teacher.

Each step's batch is the next labelled batch followed, with a transfer set, by the next batch of
unlabelled inputs; the targets are the labelled part's (the loss knows the rest has none). One
"epoch" is as many steps as one pass over the whole training split would take, whatever fraction
is labelled, so `epochs` means the same amount of training with and without few labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnspec.compress.checked import Distill
from nnspec.compress.finetune import _first
from nnspec.train.data import Split

CACHE_LIMIT = 1 << 24   # teacher output elements kept in memory (64 MiB of float32)


@dataclass
class Taught:
    """A batch's targets with the teacher's outputs on every one of its inputs, precomputed."""

    labels: torch.Tensor    # the targets of the first len(labels) inputs
    teacher: torch.Tensor   # the teacher's outputs on all the batch's inputs


def choose_labelled(targets: torch.Tensor, fraction: float, seed: int) -> np.ndarray:
    """The indices of the labelled samples: `fraction` of each class (at least one) for class
    targets, so that a small fraction still covers every class; a random fraction otherwise."""
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(targets))
    if fraction >= 1:
        return np.sort(order)
    y = targets.numpy()
    if targets.dim() != 1 or targets.is_floating_point():
        return np.sort(order[:max(1, round(fraction * len(order)))])
    chosen = []
    for c in np.unique(y):
        members = order[y[order] == c]
        chosen.append(members[:max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(chosen))


class _Cycle:
    """An endless shuffled stream of indices, reshuffled each time it runs out."""

    def __init__(self, indices: np.ndarray, rng: np.random.Generator):
        self.indices, self.rng, self.order = indices, rng, np.empty(0, dtype=np.int64)

    def take(self, k: int) -> np.ndarray:
        k = min(k, len(self.indices))
        while len(self.order) < k:
            self.order = np.concatenate([self.order, self.rng.permutation(self.indices)])
        out, self.order = self.order[:k], self.order[k:]
        return out


class StudentBatches:
    """The batches of one student: labelled, then (with a transfer set) unlabelled inputs.

    Two instances built from the same seed give the same labelled batches, so the distilled
    student and the one trained alone see the same labels in the same order.
    """

    def __init__(self, split: Split, labelled: np.ndarray, unlabelled: np.ndarray, size: int,
                 seed: int, teacher_out: torch.Tensor | None = None):
        self.split, self.size, self.teacher_out = split, size, teacher_out
        self.labelled = _Cycle(labelled, np.random.default_rng([seed, 2]))
        self.unlabelled = _Cycle(unlabelled, np.random.default_rng([seed, 3])) \
            if len(unlabelled) else None
        self.steps_per_epoch = -(-len(split) // size)

    def epoch(self):
        for _ in range(self.steps_per_epoch):
            index = self.labelled.take(self.size)
            n = len(index)
            if self.unlabelled is not None:
                index = np.concatenate([index, self.unlabelled.take(self.size)])
            index = torch.from_numpy(index)
            inputs, y = self.split.take(index)
            y = y[:n]
            yield inputs, (y if self.teacher_out is None else Taught(y, self.teacher_out[index]))


def split_for(d: Distill, split: Split, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, unlabelled) training indices of one seed; the unlabelled ones are empty
    unless the teacher labels them (`transfer = unlabelled`)."""
    labelled = choose_labelled(split.targets, d.labels, seed)
    if d.transfer != "unlabelled":
        return labelled, np.empty(0, dtype=np.int64)
    return labelled, np.setdiff1d(np.arange(len(split)), labelled)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, d: Distill, split: Split,
                    batch: int = 256) -> torch.Tensor | None:
    """The teacher's outputs on every training input, computed once per run: the teacher is
    fixed and in eval mode, so they are the same at every step of every seed. None when they
    cannot be reused (mixup pairs and feature taps need a forward of each batch) or would not
    fit in CACHE_LIMIT elements."""
    if d.mixup or d.features or len(split) == 0:
        return None
    teacher.eval()
    first = _first(teacher(*split.take(torch.arange(1))[0])).float()
    if first.numel() * len(split) > CACHE_LIMIT:
        return None
    parts = [_first(teacher(*split.take(torch.arange(s, min(s + batch, len(split))))[0])).float()
             for s in range(0, len(split), batch)]
    return torch.cat(parts)
