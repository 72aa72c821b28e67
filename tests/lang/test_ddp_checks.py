"""check for engine ddp (nnspec/lang/config/ddp_checks.py): every rule with its exact message and
help, located in a spec, and the 1-bit optimizers DeepSpeed no longer has."""
from __future__ import annotations

import importlib.util

import pytest

import nnspec
from nnspec import SpecError
from nnspec.lang.config import Call, ParallelSpec, TrainSpec, check_parallel
from nnspec.lang.config.ddp_checks import local_sgd_args, powersgd_args

E, W = "error", "warning"


def C(name, *args, **kwargs):
    return Call(name=name, args=args, kwargs=kwargs)


PSGD = C("powersgd", rank=4, warmup=10)
DDP = dict(engine="ddp")
# (id, parallel settings, world size, the exact problems)
RULES = [
    ("ddp_plain", dict(DDP), 2, []),
    ("ddp_powersgd", dict(DDP, comm_hook=PSGD, precision="bf16"), 2, []),
    ("ddp_fp16_hook", dict(DDP, comm_hook=C("fp16")), 2, []),
    ("ddp_local_sgd", dict(DDP, local_sgd=C("every", 8, warmup=10), grad_accum=2), 2, []),
    ("ddp_zero", dict(DDP, zero=2), 2, [
        ("zero", "zero 2 cannot be combined with engine ddp: ZeRO partitions training state "
         "inside DeepSpeed's engine, while DistributedDataParallel keeps a whole replica on every "
         "rank", "set zero = 0, or engine = deepspeed", E)]),
    ("ddp_pipeline", dict(DDP, pipeline_stages=2, grad_accum=2), 2, [
        ("pipeline_stages", "pipeline_stages 2 cannot be combined with engine ddp: pipelines are "
         "DeepSpeed's PipelineModule", "set pipeline_stages = 1, or engine = deepspeed", E)]),
    ("ddp_tensor", dict(DDP, tensor=2), 4, [
        ("tensor", "tensor 2 cannot be combined with engine ddp: tensor parallelism splits layers "
         "inside DeepSpeed's engine (AutoTP), while DistributedDataParallel keeps a whole replica "
         "on every rank", "set tensor = 1, or engine = deepspeed", E)]),
    ("ddp_offload", dict(DDP, offload_optimizer="cpu"), 2, [
        ("offload_optimizer", "offload_optimizer cpu cannot be combined with engine ddp: offload "
         "is part of DeepSpeed's ZeRO", "set offload_optimizer = none, or engine = deepspeed",
         E)]),
    ("ddp_comm_dtype", dict(DDP, comm_dtype="bf16"), 2, [
        ("comm_dtype", "comm_dtype bf16 is DeepSpeed's communication_data_type; engine ddp "
         "compresses gradients with its comm_hook", "write comm_hook = bf16 instead", E)]),
    ("powersgd_with_local_sgd", dict(DDP, comm_hook=PSGD, local_sgd=C("every", 8)), 2, [
        ("local_sgd", "local_sgd cannot be combined with comm_hook powersgd: post-local SGD is "
         "itself DDP's communication hook (gradients all-reduced during its warm-up, none after), "
         "and DDP takes one hook", "remove comm_hook, or local_sgd", E)]),
    ("hook_needs_ddp", dict(comm_hook=PSGD), 2, [
        ("comm_hook", "comm_hook needs engine = ddp: DeepSpeed's engine all-reduces gradients "
         "itself and takes no torch communication hook", "set engine = ddp (ZeRO and pipelines "
         "stay off), or remove comm_hook", E)]),
    ("local_sgd_needs_ddp", dict(local_sgd=C("every", 8)), 2, [
        ("local_sgd", "local_sgd needs engine = ddp: DeepSpeed's engine all-reduces gradients "
         "itself and takes no torch communication hook", "set engine = ddp (ZeRO and pipelines "
         "stay off), or remove local_sgd", E)]),
    ("hook_unknown", dict(DDP, comm_hook=C("powersdg")), 2, [
        ("comm_hook", "unknown comm_hook `powersdg`", "did you mean `powersgd`?", E)]),
    ("hook_arguments", dict(DDP, comm_hook=C("bf16", 2)), 2, [
        ("comm_hook", "comm_hook bf16 takes no arguments", "write comm_hook = bf16", E)]),
    ("powersgd_values", dict(DDP, comm_hook=C("powersgd", rank=0, warmup=1, rnak=2)), 2, [
        ("comm_hook", "powersgd has no argument `rnak`", "did you mean `rank`?", E),
        ("comm_hook", "powersgd: rank must be an integer >= 1, got 0",
         "rank: the rank of the low-rank approximation", E),
        ("comm_hook", "powersgd: warmup must be an integer >= 2, got 1",
         "warmup: steps of plain all-reduce before compressing (DDP settles its buckets after "
         "the first)", E)]),
    ("local_sgd_unknown", dict(DDP, local_sgd=C("periodic", 8)), 2, [
        ("local_sgd", "unknown local_sgd schedule `periodic`", "write local_sgd = every(8, "
         "warmup=0): average the parameters every 8 steps", E)]),
    ("local_sgd_period", dict(DDP, local_sgd=C("every", 1)), 2, [
        ("local_sgd", "every: period must be an integer >= 2, got 1", "period: optimizer steps "
         "between parameter averages (1 would all-reduce the whole model every step, more than "
         "plain DDP sends)", E)]),
    ("local_sgd_no_period", dict(DDP, local_sgd=C("every", warmup=4)), 2, [
        ("local_sgd", "local_sgd every(...) needs its period",
         "write every(8): average the parameters every 8 steps", E)]),
    ("warmup_past_the_run", dict(DDP, comm_hook=C("powersgd", warmup=500)), 2, [
        ("comm_hook", "comm_hook warmup 500 >= the run's 100 steps, so PowerSGD never compresses",
         "use a warmup below 100", E)]),
    ("one_rank", dict(DDP, local_sgd=C("every", 4)), 1, [
        ("local_sgd", "the data-parallel degree is 1: nothing is all-reduced",
         "train with more ranks", W)]),
]


@pytest.mark.parametrize("name, parallel, world, want", RULES, ids=[r[0] for r in RULES])
def test_rule(name, parallel, world, want):
    got = check_parallel(TrainSpec(steps=100), ParallelSpec(**parallel), world)
    assert [tuple(p) for p in got] == want


def test_arguments_defaults_and_positional_forms():
    assert powersgd_args(C("powersgd")) == {"rank": 4, "warmup": 10}
    assert powersgd_args(C("powersgd", 2, warmup=3)) == {"rank": 2, "warmup": 3}
    assert local_sgd_args(C("every", 8)) == {"period": 8, "warmup": 0}
    assert local_sgd_args(C("every", period=16, warmup=5)) == {"period": 16, "warmup": 5}


SPEC = """model m(n = 10) {{
  input x: float[1, 8, 8]
  flatten
  fc: linear(n)
}}
train {{
  optimizer = {optimizer}
  steps = 100
}}
parallel {{
  engine = ddp
  data_parallel = 2
  {setting}
}}
"""


def test_a_spec_gets_located_errors():
    with pytest.raises(SpecError) as err:
        nnspec.loads(SPEC.format(optimizer="adamw", setting="comm_hook = powersgd(rank=4)\n"
                                 "  local_sgd = every(8)"))
    text = err.value.render(False)
    assert "error[E0710]: local_sgd cannot be combined with comm_hook powersgd" in text
    assert "<string>:14:3" in text and "local_sgd = every(8)" in text


def test_a_spec_with_a_hook_checks():
    spec = nnspec.loads(SPEC.format(optimizer="adamw", setting="comm_hook = powersgd(rank=4, "
                                    "warmup=10)"))
    assert spec.settings.parallel.comm_hook == C("powersgd", rank=4, warmup=10)
    assert nnspec.loads(SPEC.format(optimizer="adamw", setting="comm_hook = bf16")
                        ).settings.parallel.comm_hook == C("bf16")


@pytest.mark.parametrize("name, what", [("onebit_adam", "1-bit Adam"),
                                        ("ZeroOneAdam", "0/1 Adam"),
                                        ("onebitlamb", "1-bit LAMB")])
def test_onebit_optimizers_are_refused_with_the_reason(name, what):
    with pytest.raises(SpecError) as err:
        nnspec.loads(SPEC.format(optimizer=f"{name}(lr=1e-3)", setting=""))
    text = err.value.render(False)
    assert (f"optimizer {name} cannot be used: DeepSpeed 0.19.8 (the one installed) has no {what} "
            "(0.19 removed its 1-bit optimizers), and they need NCCL on GPUs") in text
    assert "<string>:7:3" in text and "comm_hook = powersgd(rank=4)" in text


def test_the_installed_deepspeed_has_no_onebit_optimizers():
    """What the refusal above says; should a DeepSpeed with them be installed, this fails and
    the optimizers can be offered over NCCL instead."""
    pytest.importorskip("deepspeed")
    import deepspeed
    from nnspec.lang.config.optim_table import DEEPSPEED_VERSION

    assert deepspeed.__version__ == DEEPSPEED_VERSION
    for module in ("deepspeed.runtime.fp16.onebit", "deepspeed.runtime.fp16.onebit.adam",
                   "deepspeed.runtime.fp16.onebit.zoadam"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        assert found is None, module
