"""Which samples each rank sees at each step, fixed by the seed.

The global batch of step `s` is the same whatever the number of ranks or accumulation steps, which
is also what makes a resumed run land exactly where an uninterrupted one does.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

EVAL_BATCH = 256      # samples per rank per evaluation forward


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class BatchPlan:
    """Which samples each rank uses at each step: a fresh permutation per epoch from the seed,
    cut into global batches, each cut into `accum` x `world` micro-batches. An epoch is
    ceil(n / batch) steps (config.total_steps_for); the last batch is filled up with the first
    samples of the permutation, as DistributedSampler pads, so every step has full batches."""

    n: int
    batch: int
    micro: int
    accum: int
    world: int
    rank: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.batch)

    def order(self, epoch: int) -> torch.Tensor:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch]))
        perm = torch.from_numpy(rng.permutation(self.n))
        pad = self.steps_per_epoch * self.batch - self.n
        return torch.cat([perm] + [perm] * (pad // self.n) + [perm[:pad % self.n]])

    def micro_batches(self, step: int, order: torch.Tensor) -> list[torch.Tensor]:
        start = (step % self.steps_per_epoch) * self.batch
        return [order[start + (k * self.world + self.rank) * self.micro:][:self.micro]
                for k in range(self.accum)]


def eval_batches(n: int, world: int, rank: int, size: int = EVAL_BATCH):
    """(indices, valid) per batch for this rank; every rank runs the same number of forwards
    (ZeRO-3 gathers weights collectively), padding short batches with repeats not counted."""
    mine = torch.arange(rank, n, world)
    per_rank = math.ceil(n / world)
    for start in range(0, per_rank, size):
        idx = mine[start:start + size]
        want = min(size, per_rank - start)
        valid = len(idx)
        if valid < want:
            idx = torch.cat([idx, torch.zeros(want - valid, dtype=torch.long)])
        yield idx, valid
