"""Short training runs inside compression: fine-tuning after pruning, quantization-aware
training, distillation and its student-alone baseline.

The full loop (nnspec.train.run) trains a spec from scratch with checkpoints and logs; these runs
start from a module in memory (a pruned, fake-quantized or re-seeded one) and need a per-step hook
(pruning masks) or another loss (the teacher's soft targets), so they use this small loop over
the same data, objective and optimizer settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from nnspec.lang.config import Call, TrainSpec, optimizer_lr
from nnspec.train.data import Data, Split, load_data
from nnspec.train.metrics import Objective, build_objective
from nnspec.train.optim import build_optimizer

EVAL_BATCH = 256


@dataclass
class Session:
    """What every run of one compression shares: the train section, data and objective."""

    train: TrainSpec
    data: Data
    objective: Objective

    @property
    def metric(self) -> str:
        """The task metric reported before and after (accuracy, perplexity, or loss)."""
        return self.objective.names[1] if len(self.objective.names) > 1 else "loss"

    def batches(self, n: int, size: int | None = None):
        """The first `n` training batches in order (calibration)."""
        size = size or self.train.batch_size
        for start in range(0, min(n * size, len(self.data.train)), size):
            yield self.data.train.take(torch.arange(start, min(start + size,
                                                               len(self.data.train))))[0]


def open_session(spec, base_dir=None) -> Session:
    train = spec.settings.train
    objective = build_objective(train)
    data = load_data(train.data, spec.summary(), split=train.split, seed=train.seed,
                     target=objective.target, base_dir=base_dir)
    return Session(train, data, objective)


def default_epochs(train: TrainSpec, n: int) -> int:
    if train.epochs:
        return train.epochs
    steps_per_epoch = -(-n // train.batch_size)
    return max(1, -(-(train.steps or steps_per_epoch) // steps_per_epoch))


LossFn = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]


class Batches(Protocol):
    """Where a run's batches come from: `steps_per_epoch` and one epoch's (inputs, targets)."""

    steps_per_epoch: int

    def epoch(self) -> Iterator[tuple[tuple, object]]: ...


class WholeSplit:
    """Every training sample once per epoch, in an order shuffled from `seed`."""

    def __init__(self, split: Split, size: int, seed: int):
        self.split, self.size, self.rng = split, size, np.random.default_rng(seed)
        self.steps_per_epoch = -(-len(split) // size)

    def epoch(self):
        order = torch.from_numpy(self.rng.permutation(len(self.split)))
        for start in range(0, len(self.split), self.size):
            yield self.split.take(order[start:start + self.size])


def fit(model: nn.Module, session: Session, epochs: int, lr: float | None = None, *,
        seed: int = 0, loss_fn: LossFn | None = None,
        on_step: Callable[[int], None] | None = None,
        extra_params: list[nn.Parameter] | None = None,
        batches: Batches | None = None) -> int:
    """Train `model` in place for `epochs` with the train section's optimizer (at `lr`), a cosine
    decay to 0, shuffled batches from `seed` (or from `batches`); `on_step(step)` runs after
    every update.

    Returns:
        The number of optimizer steps taken.
    """
    train = session.train
    lr = lr if lr is not None else optimizer_lr(train.optimizer)
    opt_call = Call(name=train.optimizer.name, args=train.optimizer.args,
                    kwargs={**train.optimizer.kwargs, "lr": lr})
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    optimizer = build_optimizer(opt_call, params)
    batches = batches or WholeSplit(session.data.train, train.batch_size, seed)
    total = epochs * batches.steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / max(total, 1))))
    loss_fn = loss_fn or (lambda m, inputs, y: session.objective.loss(_first(m(*inputs)), y))
    step = 0
    model.train()
    for _ in range(epochs):
        for inputs, y in batches.epoch():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, inputs, y)
            loss.backward()
            if train.clip_grad_norm:
                nn.utils.clip_grad_norm_(params, train.clip_grad_norm)
            optimizer.step()
            schedule.step()
            step += 1
            if on_step is not None:
                on_step(step)
    model.eval()
    return step


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def evaluate(model: nn.Module, session: Session) -> dict[str, float]:
    """Loss and metrics on the test split."""
    model.eval()
    test = session.data.test
    sums = None
    for start in range(0, len(test), EVAL_BATCH):
        inputs, y = test.take(torch.arange(start, min(start + EVAL_BATCH, len(test))))
        out = _first(model(*inputs)).float()
        part = session.objective.batch_sums(out, y)
        sums = part if sums is None else sums + part
    return session.objective.summarize(sums)


@torch.no_grad()
def outputs(model: nn.Module, session: Session, n: int = 512) -> torch.Tensor:
    """The model's outputs on the first `n` test samples (to compare before and after)."""
    model.eval()
    inputs, _ = session.data.test.take(torch.arange(min(n, len(session.data.test))))
    return _first(model(*inputs)).float()
