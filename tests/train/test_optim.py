"""Optimizers by name; one-process runs use DeepSpeed's own schedulers, step for step; bad
settings are TrainErrors before anything runs."""
from __future__ import annotations

import pytest
import torch
from deepspeed.runtime import lr_schedules

from nnspec.lang.config import SCHEDULES as SCHEDULES_OF_LANGUAGE
from nnspec.lang.config import Call, ParallelSpec, TrainSpec
from nnspec.emit.deepspeed import emit_deepspeed_config
from nnspec.train import TrainError
from nnspec.train.local import LocalBackend
from nnspec.train.loop import check_settings
from nnspec.train.optim import build_optimizer, deepspeed_scheduler, plateau

TOTAL = 60


def sgd(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


class SquaredError:
    """The loop's objective, reduced to what LocalBackend.train_step calls."""

    @staticmethod
    def loss(out, y):
        return ((out - y) ** 2).mean()


def one_process_lrs(backend: LocalBackend, steps: int) -> list[float]:
    """The lr each optimizer step of a one-process run trains at."""
    batch = [((torch.ones(4, 2),), torch.zeros(4, 1))]
    out = []
    for _ in range(steps):
        out.append(backend.lr())
        backend.train_step(batch, SquaredError)
    return out


def deepspeed_lrs(block: dict, steps: int) -> list[float]:
    """The same from DeepSpeed's scheduler class, stepped after each optimizer step as its
    engine does (deepspeed/runtime/engine.py _take_model_step)."""
    optimizer = sgd()
    scheduler = getattr(lr_schedules, block["type"])(optimizer, **block["params"])
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


# every schedule the language has that DeepSpeed runs (reduce_on_plateau is torch's, below)
SCHEDULES = [
    (Call(name="constant", kwargs={"warmup": 10}), "WarmupLR"),
    (Call(name="warmup_linear", kwargs={"warmup": 10}), "WarmupDecayLR"),
    (Call(name="warmup_linear"), "WarmupDecayLR"),
    (Call(name="warmup_cosine", kwargs={"warmup": 7, "min_ratio": 0.1}), "WarmupCosineLR"),
    (Call(name="warmup_cosine"), "WarmupCosineLR"),
    (Call(name="one_cycle", kwargs={"pct_start": 0.25}), "OneCycle"),
    (Call(name="one_cycle", kwargs={"max_lr": 0.3, "div_factor": 10.0}), "OneCycle"),
]


def test_every_schedule_kind_is_covered():
    assert {c.name for c, _ in SCHEDULES} == set(SCHEDULES_OF_LANGUAGE) - {"reduce_on_plateau"}


@pytest.mark.parametrize("schedule,kind", SCHEDULES,
                         ids=lambda v: f"{v.name}{sorted(v.kwargs.items())}"
                         if isinstance(v, Call) else v)
def test_one_process_lr_is_deepspeeds(schedule, kind):
    train = TrainSpec(optimizer=Call(name="sgd", kwargs={"lr": 0.1}), schedule=schedule)
    block = emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=TOTAL)["scheduler"]
    assert block["type"] == kind
    backend = LocalBackend(torch.nn.Linear(2, 1), train, "fp32", block)
    assert type(backend.scheduler) is getattr(lr_schedules, kind)  # one implementation
    steps = TOTAL + 5  # a few past the end, where schedules hold their floor
    got = one_process_lrs(backend, steps)
    assert got == deepspeed_lrs(block, steps)
    assert len(set(got)) > 2  # the schedule moved the lr


def test_one_process_schedule_resumes_where_it_stopped(tmp_path):
    """The scheduler's state travels in the checkpoint: a resumed run continues the curve."""
    train = TrainSpec(optimizer=Call(name="sgd", kwargs={"lr": 0.1}),
                      schedule=Call(name="warmup_cosine", kwargs={"warmup": 5}))
    block = emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=TOTAL)["scheduler"]
    first = LocalBackend(torch.nn.Linear(2, 1), train, "fp32", block)
    head = one_process_lrs(first, 20)
    first.save(tmp_path, 20, {}, keep=1)
    resumed = LocalBackend(torch.nn.Linear(2, 1), train, "fp32", block)
    resumed.load(tmp_path)
    assert head + one_process_lrs(resumed, 20) == deepspeed_lrs(block, 40)


def test_constant_without_warmup_has_no_scheduler():
    cfg = emit_deepspeed_config(TrainSpec(), ParallelSpec(), 1, total_steps=TOTAL)
    assert "scheduler" not in cfg
    assert deepspeed_scheduler(cfg.get("scheduler"), sgd()) is None


@pytest.mark.parametrize("name,cls", [
    ("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
    ("adagrad", torch.optim.Adagrad), ("RMSprop", torch.optim.RMSprop),
    ("nadam", torch.optim.NAdam),
])
def test_optimizers_by_name(name, cls):
    opt = build_optimizer(Call(name=name, kwargs={"lr": 0.05}), [torch.nn.Parameter(torch.ones(2))])
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.05
    sgd_momentum = build_optimizer(Call(name="sgd", kwargs={"lr": 0.1, "momentum": 0.9}),
                                   [torch.nn.Parameter(torch.ones(2))])
    assert sgd_momentum.param_groups[0]["momentum"] == 0.9


def test_reduce_on_plateau_scales_after_patience():
    train = TrainSpec(schedule=Call(name="reduce_on_plateau", kwargs={"patience": 1,
                                                                     "factor": 0.5}))
    opt = sgd(1.0)
    sched = plateau(train, opt)
    for loss in (1.0, 0.5, 0.6, 0.7, 0.8):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == 0.5
    assert plateau(TrainSpec(), opt) is None


@pytest.mark.parametrize("train,match", [
    (TrainSpec(optimizer=Call(name="adamx")), "unknown optimizer"),
    (TrainSpec(optimizer=Call(name="adamw", kwargs={"lrate": 1})), "no argument `lrate`"),
    (TrainSpec(optimizer=Call(name="sgd", kwargs={"lr": -1.0})), "optimizer sgd"),
    (TrainSpec(schedule=Call(name="cosine")), "unknown schedule"),
    (TrainSpec(loss=Call(name="crossentropy")), "unknown loss"),
    (TrainSpec(metrics=("acc",)), "unknown metric"),
    (TrainSpec(loss=Call(name="mse"), metrics=("accuracy",)), "does not apply"),
    (TrainSpec(batch_size=30), "not divisible"),
])
def test_bad_settings_are_train_errors(train, match):
    parallel = ParallelSpec(grad_accum=4) if train.batch_size == 30 else ParallelSpec()
    with pytest.raises(TrainError, match=match) as info:
        check_settings(train, parallel, 1)
    assert info.value.render().startswith("error: ")
