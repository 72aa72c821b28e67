"""The scheduler blocks run DeepSpeed's own schedulers along the curves nnspec's schedule names
promise; the optimizer blocks build the torch optimizers they name."""
from __future__ import annotations

import pytest
import torch

from nnspec.lang.config import Call, ParallelSpec, TrainSpec
from nnspec.emit.deepspeed import client_scheduler, emit_deepspeed_config

from .dsvalidate import build_optimizer, build_scheduler


def lrs(schedule: Call, steps: int, lr: float = 0.1, total_steps=None, opt="sgd") -> list[float]:
    train = TrainSpec(steps=steps if total_steps is None else None, epochs=None,
                      optimizer=Call(name=opt, kwargs={"lr": lr}), schedule=schedule)
    cfg = emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=total_steps)
    optimizer = build_optimizer(cfg)
    sched = build_scheduler(cfg, optimizer)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    return out


def test_constant_warmup():
    got = lrs(Call(name="constant", kwargs={"warmup": 10}), 30)
    # DeepSpeed's WarmupLR: the first two steps run at warmup_min_lr (init, then step index 0)
    assert got[0] == got[1] == 0.0
    assert got[5] == pytest.approx(0.1 * 4 / 10)
    assert got[11:] == pytest.approx([0.1] * 19)


def test_warmup_linear():
    got = lrs(Call(name="warmup_linear", kwargs={"warmup": 10}), 100)
    assert max(got) == pytest.approx(0.1)
    assert got.index(max(got)) == 11
    assert got[-1] == pytest.approx(0.1 * 2 / 90)
    assert all(a >= b for a, b in zip(got[11:], got[12:]))


def test_warmup_cosine_total_steps_from_argument():
    got = lrs(Call(name="warmup_cosine", kwargs={"warmup": 10, "min_ratio": 0.1}), 110,
              total_steps=110)
    assert got[:3] == pytest.approx([0.0, 0.0, 0.01])
    assert max(got) == pytest.approx(0.1, rel=1e-3)
    assert got[-1] == pytest.approx(0.01, rel=0.05)


def test_warmup_cosine_without_warmup_starts_at_peak():
    got = lrs(Call(name="warmup_cosine"), 50)
    # WarmupCosineLR sets lr 0 before its first step(), whatever the warm-up: DeepSpeed's engine
    # steps the scheduler after the optimizer, so the very first optimizer step runs at lr 0
    assert got[0] == 0.0
    assert got[1] == pytest.approx(0.1)
    assert got[-1] < 0.001


def test_one_cycle():
    got = lrs(Call(name="one_cycle", kwargs={"pct_start": 0.25}), 100, lr=0.2)
    assert got[0] == pytest.approx(0.2 / 25)
    assert max(got) == pytest.approx(0.2)
    assert got.index(max(got)) == 25
    assert got[-1] == pytest.approx(0.2 / 25 + (0.2 - 0.2 / 25) / 75)  # one step before the end


def test_one_cycle_leaves_adam_betas_alone():
    train = TrainSpec(steps=20, optimizer=Call(name="adamw", kwargs={"betas": (0.8, 0.95)}),
                      schedule=Call(name="one_cycle"))
    cfg = emit_deepspeed_config(train, ParallelSpec(), 1)
    optimizer = build_optimizer(cfg)
    sched = build_scheduler(cfg, optimizer)
    sched.step()
    assert tuple(optimizer.param_groups[0]["betas"]) == (0.8, 0.95)


def test_reduce_on_plateau_is_the_clients():
    train = TrainSpec(schedule=Call(name="reduce_on_plateau", kwargs={"patience": 2}))
    assert "scheduler" not in emit_deepspeed_config(train, ParallelSpec(), 1)
    name, kwargs = client_scheduler(train)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = getattr(torch.optim.lr_scheduler, name)(optimizer, **kwargs)
    for _ in range(4):
        sched.step(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_adam_is_adam_not_adamw():
    """DeepSpeed's "Adam" type means AdamW unless adam_w_mode is false."""
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        cfg = emit_deepspeed_config(TrainSpec(optimizer=Call(name=name)), ParallelSpec(), 1)
        assert type(build_optimizer(cfg)) is cls


def test_missing_total_steps_is_an_error():
    train = TrainSpec(epochs=3, schedule=Call(name="warmup_linear"))
    with pytest.raises(ValueError, match="needs the total number of optimizer steps"):
        emit_deepspeed_config(train, ParallelSpec(), 1)
    cfg = emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=300)
    assert cfg["scheduler"]["params"]["total_num_steps"] == 300
