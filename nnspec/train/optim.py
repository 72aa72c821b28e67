"""Optimizers by name, and the learning-rate schedules of one-process runs: DeepSpeed's own
scheduler classes, built from the scheduler block the DeepSpeed emitter writes
(nnspec.emit.deepspeed), so a spec's learning rate at step k is the same in one process and under
the runner. reduce_on_plateau is torch's ReduceLROnPlateau in both, stepped by the loop with the
evaluation loss.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nnspec.lang.config import Call, TrainSpec, _plain, schedule_args, torch_optimizer_class
from nnspec.train.errors import TrainError


def build_optimizer(call: Call, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimizer a train section names (adam, adamw, sgd, adagrad or any torch.optim
    class, case-insensitive), over `params`. Its arguments were checked by config.check_train."""
    cls = torch_optimizer_class(call.name)
    if cls is None:
        raise TrainError(f"unknown optimizer `{call.name}`", "use adamw, adam, sgd, adagrad or a "
                         "torch.optim class")
    return cls(params, **_plain(dict(call.kwargs)))


def deepspeed_scheduler(block: dict | None, optimizer: torch.optim.Optimizer) -> Any | None:
    """DeepSpeed's own scheduler (deepspeed.runtime.lr_schedules) for the emitted "scheduler"
    block, on `optimizer`; None when the block is None (no schedule, or reduce_on_plateau).

    The runner's engine builds the same class from the same block and steps it after every
    optimizer step; the one-process backend does the same, so a spec's lr at every step comes
    from one implementation on both paths.
    """
    if block is None:
        return None
    from deepspeed.runtime import lr_schedules

    if block["type"] not in lr_schedules.VALID_LR_SCHEDULES:
        raise TrainError(f"scheduler {block['type']} is not one of DeepSpeed's",
                         "use another schedule")
    return getattr(lr_schedules, block["type"])(optimizer, **block["params"])


def plateau(train: TrainSpec, optimizer: Any) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """torch's ReduceLROnPlateau for `reduce_on_plateau` (on the torch optimizer inside a
    DeepSpeed wrapper), else None."""
    if train.schedule.name != "reduce_on_plateau":
        return None
    args = schedule_args(train.schedule)
    inner = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(inner, torch.optim.Optimizer):
        inner = optimizer
    return torch.optim.lr_scheduler.ReduceLROnPlateau(inner, factor=args["factor"],
                                                      patience=args["patience"])
