"""Optimizers by name, and learning-rate schedules that run alike in one process and under
DeepSpeed.

A schedule's meaning is fixed once, by the scheduler block the DeepSpeed emitter writes for it
(nnspec.emit.deepspeed). Under the runner DeepSpeed runs that block; in one process `lr_factor`
follows the same block step by step (DeepSpeed's WarmupLR, WarmupDecayLR, WarmupCosineLR and
OneCycle formulas, including their first steps at the minimum lr) through torch's LambdaLR, so a
spec's learning rate at step k is the same in both. reduce_on_plateau is torch's
ReduceLROnPlateau in both, stepped by the loop with the evaluation loss.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

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


def lr_factor(block: dict | None, base: float) -> Callable[[int], float] | None:
    """The lr multiplier before optimizer step k (0-based) under a DeepSpeed scheduler block.

    Mirrors deepspeed/runtime/lr_schedules.py: each scheduler sets the lr of step 0 when built,
    and the engine steps it after every optimizer step, so step k >= 1 runs at the scheduler's
    value for iteration k - 1.
    """
    if block is None:
        return None
    kind, p = block["type"], block["params"]
    curve = {"WarmupLR": _warmup, "WarmupDecayLR": _warmup_decay,
             "WarmupCosineLR": _warmup_cosine, "OneCycle": _one_cycle}.get(kind)
    if curve is None:
        raise TrainError(f"scheduler {kind} has no one-process equivalent", "use another schedule")
    return lambda k: curve(p, k, base)


def _gamma(p: dict, it: int) -> float | None:
    """Warm-up progress at iteration `it` (None once warm-up is over)."""
    warm = max(2, p["warmup_num_steps"])
    if it >= warm:
        return None
    if p.get("warmup_type", "log") == "linear":
        return it / warm
    return math.log(it + 1) / math.log(warm)


def _warmup(p: dict, k: int, base: float) -> float:
    lo, hi = p.get("warmup_min_lr", 0.0), p.get("warmup_max_lr", base)
    if k == 0:
        return lo / base
    g = _gamma(p, k - 1)
    return (lo + (hi - lo) * (1.0 if g is None else g)) / base


def _warmup_decay(p: dict, k: int, base: float) -> float:
    lo, hi = p.get("warmup_min_lr", 0.0), p.get("warmup_max_lr", base)
    if k == 0:
        return lo / base
    it, total, warm = k - 1, p["total_num_steps"], max(2, p["warmup_num_steps"])
    g = _gamma(p, it)
    if g is None:
        g = max(0.0, (total - it) / max(1.0, total - warm))
    return (lo + (hi - lo) * g) / base


def _warmup_cosine(p: dict, k: int, base: float) -> float:
    if k == 0:
        return 0.0
    it, total, warm = k - 1, p["total_num_steps"], max(2, p["warmup_num_steps"])
    g = _gamma(p, it)
    if g is not None:
        lo = p.get("warmup_min_ratio", 0.0)
        return lo + g * (1 - lo)
    floor = p.get("cos_min_ratio", 0.0001)
    progress = min(1.0, (it - warm + 1) / max(1, total - warm))
    return max(0.0, floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2)


def _one_cycle(p: dict, k: int, base: float) -> float:
    lo, hi = p["cycle_min_lr"], p["cycle_max_lr"]
    first = float(p.get("cycle_first_step_size", 2000))
    second = float(p.get("cycle_second_step_size") or first)
    size = first + second
    if k == 0 or k - 1 >= size:
        return lo / base
    x = k / size - math.floor(k / size)  # DeepSpeed: batch_iteration = it + 1 = k
    ratio = first / size
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    return (lo + (hi - lo) * scale) / base


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
