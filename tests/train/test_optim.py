"""Optimizers by name; one-process schedules follow DeepSpeed's schedulers step for step; bad
settings are TrainErrors before anything runs."""
from __future__ import annotations

import pytest
import torch

from nnspec.lang.config import Call, ParallelSpec, TrainSpec
from nnspec.emit.deepspeed import emit_deepspeed_config
from nnspec.train import TrainError
from nnspec.train.loop import check_settings
from nnspec.train.optim import build_optimizer, lr_factor, plateau

TOTAL = 60


def sgd(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def curve(scheduler, optimizer) -> list[float]:
    out = []
    for _ in range(TOTAL + 5):  # a few past the end, where schedules hold their floor
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("schedule", [
    Call(name="constant", kwargs={"warmup": 10}),
    Call(name="warmup_linear", kwargs={"warmup": 10}),
    Call(name="warmup_linear"),
    Call(name="warmup_cosine", kwargs={"warmup": 7, "min_ratio": 0.1}),
    Call(name="warmup_cosine"),
    Call(name="one_cycle", kwargs={"pct_start": 0.25}),
    Call(name="one_cycle", kwargs={"max_lr": 0.3, "div_factor": 10.0}),
], ids=lambda c: f"{c.name}{sorted(c.kwargs.items())}")
def test_one_process_lr_follows_deepspeed(schedule):
    lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    train = TrainSpec(optimizer=Call(name="sgd", kwargs={"lr": 0.1}), schedule=schedule)
    block = emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=TOTAL)["scheduler"]
    ds_opt = sgd()
    ds = getattr(lr_schedules, block["type"])(ds_opt, **block["params"])
    ours_opt = sgd()
    ours = torch.optim.lr_scheduler.LambdaLR(ours_opt, lr_factor(block, 0.1))
    assert curve(ours, ours_opt) == pytest.approx(curve(ds, ds_opt), rel=1e-9, abs=1e-12)


def test_constant_without_warmup_has_no_scheduler():
    cfg = emit_deepspeed_config(TrainSpec(), ParallelSpec(), 1, total_steps=TOTAL)
    assert lr_factor(cfg.get("scheduler"), 1e-3) is None


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
