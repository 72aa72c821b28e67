"""DeepSpeed itself accepts every emitted config, for the world size it was emitted for, and reads
each value the way nnspec meant; the optimizer and scheduler blocks build real objects."""
from __future__ import annotations

import itertools

import pytest
import torch

from nnspec.lang.config import Call, ParallelSpec, TrainSpec, check_parallel
from nnspec.emit.deepspeed import client_optimizer, emit_deepspeed_config

from .cases import CASES
from .dsvalidate import build_optimizer, build_scheduler, deepspeed_config


def accepted(cfg, train, parallel, world_size):
    ds = deepspeed_config(cfg, world_size, parallel.pipeline_stages)
    dp = world_size // parallel.pipeline_stages
    assert ds.world_size == dp
    assert ds.train_batch_size == train.batch_size
    assert (ds.train_micro_batch_size_per_gpu * ds.gradient_accumulation_steps * dp
            == train.batch_size)
    assert ds.zero_optimization_stage == parallel.zero
    assert ds.bfloat16_config.enabled == (parallel.precision == "bf16")
    assert ds.float16_config.enabled == (parallel.precision == "fp16")
    assert ds.gradient_clipping == (train.clip_grad_norm or 0.0)
    comm = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    effective = ds.communication_data_type or comm[parallel.precision]
    assert effective == comm[parallel.comm_dtype]
    zc = ds.zero_config
    assert (zc.offload_optimizer.device if zc.offload_optimizer else "none") == \
        parallel.offload_optimizer
    assert (zc.offload_param.device if zc.offload_param else "none") == parallel.offload_param
    return ds


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_case_accepted(name):
    c = CASES[name]
    cfg = emit_deepspeed_config(c.train, c.parallel, c.world_size, total_steps=c.total_steps)
    accepted(cfg, c.train, c.parallel, c.world_size)
    opt = build_optimizer(cfg, client_optimizer(c.train))
    if "scheduler" in cfg:
        build_scheduler(cfg, opt)


# every parallel combination nnspec accepts, at several world sizes
GRID = dict(zero=[0, 1, 2, 3], offload=["none", "cpu", "nvme"], precision=["fp32", "bf16", "fp16"],
            stages=[1, 2], ckpt=[False, True], comm=["fp32", "fp16", "bf16"])


def combos():
    for zero, off, prec, stages, ckpt, comm in itertools.product(*GRID.values()):
        kw = dict(zero=zero, precision=prec, pipeline_stages=stages, comm_dtype=comm,
                  activation_checkpointing=("block*",) if ckpt else ())
        if off != "none":
            kw.update(offload_optimizer=off, offload_param=off if zero == 3 else "none",
                      nvme_path="/nvme" if off == "nvme" else None)
        yield ParallelSpec(**kw)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_every_valid_combination_accepted(world_size):
    train = TrainSpec(batch_size=128, steps=100, schedule=Call(name="warmup_cosine",
                                                               kwargs={"warmup": 10}))
    n = 0
    for parallel in combos():
        if any(p.severity == "error" for p in check_parallel(train, parallel, world_size)):
            continue
        cfg = emit_deepspeed_config(train, parallel, world_size)
        accepted(cfg, train, parallel, world_size)
        n += 1
    assert n >= 40


def test_validation_uses_the_world_size():
    """The patched world size is real: a config for 2 processes fails DeepSpeed's batch check at 4,
    and a pipeline's grid makes DeepSpeed count data-parallel ranks, not processes."""
    train, parallel = TrainSpec(batch_size=64), ParallelSpec()
    cfg = emit_deepspeed_config(train, parallel, 2)
    deepspeed_config(cfg, 2)
    with pytest.raises(AssertionError, match="64 != 32 \\* 1 \\* 4"):
        deepspeed_config(cfg, 4)
    pipe = ParallelSpec(pipeline_stages=2, grad_accum=2)
    cfg = emit_deepspeed_config(train, pipe, 4)
    assert deepspeed_config(cfg, 4, pipeline_stages=2).world_size == 2
    with pytest.raises(AssertionError):
        deepspeed_config(cfg, 4)


def test_deepspeed_accepts_unknown_top_level_keys():
    """Why nnspec checks keys itself: DeepSpeedConfig only forbids unknown keys inside its
    pydantic blocks."""
    cfg = emit_deepspeed_config(TrainSpec(), ParallelSpec(), 1)
    deepspeed_config({**cfg, "train_batch_sze": 3}, 1)
    with pytest.raises(Exception, match="stag"):
        deepspeed_config({**cfg, "zero_optimization": {"stag": 1}}, 1)


def test_gradient_clipping_default_is_one():
    """DeepSpeed 0.19 clips at 1.0 when the key is missing, so nnspec always writes it."""
    cfg = emit_deepspeed_config(TrainSpec(), ParallelSpec(), 1)
    assert cfg["gradient_clipping"] == 0.0
    del cfg["gradient_clipping"]
    assert deepspeed_config(cfg, 1).gradient_clipping == 1.0
