"""Compile-time checks of `parallel { engine = ddp }`: torch's DistributedDataParallel with a
communication hook (`comm_hook = powersgd(rank=4, warmup=10) | fp16 | bf16 | none`) or post-local
SGD (`local_sgd = every(8, warmup=0)`), and what cannot run beside them.

The arguments are read here once (`powersgd_args`, `local_sgd_args`), for check and for the
backend (nnspec.train.ddp) alike, so both agree on the defaults. Torch-free, like every check.
"""
from __future__ import annotations

from typing import Any, Optional

from nnspec.lang.config.models import Call, ParallelSpec, TrainSpec
from nnspec.lang.config.optim import _is_int, known_total_steps
from nnspec.lang.config.train_checks import Problem

HOOKS = ("none", "powersgd", "fp16", "bf16")
# argument -> (default, smallest value, why the smallest)
POWERSGD_ARGS = {
    "rank": (4, 1, "the rank of the low-rank approximation"),
    # torch's PowerSGD with error feedback and warm start refuses start_powerSGD_iter <= 1:
    # DDP rebuilds its gradient buckets after the first iteration
    "warmup": (10, 2, "steps of plain all-reduce before compressing (DDP settles its buckets "
               "after the first)"),
}
LOCAL_SGD_ARGS = {
    "period": (None, 2, "optimizer steps between parameter averages (1 would all-reduce the "
               "whole model every step, more than plain DDP sends)"),
    "warmup": (0, 0, "steps of plain gradient all-reduce before local SGD starts"),
}


def powersgd_args(call: Call) -> dict[str, Any]:
    """{"rank", "warmup"} of `powersgd(rank=4, warmup=10)`, defaults filled in."""
    return _args(call, POWERSGD_ARGS, "rank")


def local_sgd_args(call: Call) -> dict[str, Any]:
    """{"period", "warmup"} of `every(8, warmup=0)` (or `every(period=8)`)."""
    return _args(call, LOCAL_SGD_ARGS, "period")


def _args(call: Call, table: dict, first: str) -> dict[str, Any]:
    given = dict(call.kwargs)
    if call.args:
        given.setdefault(first, call.args[0])
    return {k: given.get(k, default) for k, (default, _, _) in table.items()}


def ddp_problems(train: TrainSpec, parallel: ParallelSpec, dp: Optional[int]) -> list[Problem]:
    """Every problem of engine / comm_hook / local_sgd, for data-parallel degree `dp`."""
    out: list[Problem] = []
    hook, local = parallel.comm_hook, parallel.local_sgd
    out += _hook_problems(hook) + (_local_sgd_problems(local) if local is not None else [])
    if parallel.engine != "ddp":
        for key, used in (("comm_hook", hook.name != "none"), ("local_sgd", local is not None)):
            if used:
                out.append(Problem(key, f"{key} needs engine = ddp: DeepSpeed's engine all-reduces "
                                   "gradients itself and takes no torch communication hook",
                                   f"set engine = ddp (ZeRO and pipelines stay off), or remove "
                                   f"{key}"))
        return out
    if parallel.zero:
        out.append(Problem("zero", f"zero {parallel.zero} cannot be combined with engine ddp: ZeRO "
                           "partitions training state inside DeepSpeed's engine, while "
                           "DistributedDataParallel keeps a whole replica on every rank",
                           "set zero = 0, or engine = deepspeed"))
    if parallel.pipeline_stages > 1:
        out.append(Problem("pipeline_stages", f"pipeline_stages {parallel.pipeline_stages} cannot "
                           "be combined with engine ddp: pipelines are DeepSpeed's PipelineModule",
                           "set pipeline_stages = 1, or engine = deepspeed"))
    if parallel.tensor > 1:
        out.append(Problem("tensor", f"tensor {parallel.tensor} cannot be combined with engine "
                           "ddp: tensor parallelism splits layers inside DeepSpeed's engine "
                           "(AutoTP), while DistributedDataParallel keeps a whole replica on "
                           "every rank", "set tensor = 1, or engine = deepspeed"))
    for key in ("offload_optimizer", "offload_param"):
        if getattr(parallel, key) != "none":
            out.append(Problem(key, f"{key} {getattr(parallel, key)} cannot be combined with "
                               "engine ddp: offload is part of DeepSpeed's ZeRO",
                               f"set {key} = none, or engine = deepspeed"))
    if parallel.comm_dtype != "fp32":
        out.append(Problem("comm_dtype", f"comm_dtype {parallel.comm_dtype} is DeepSpeed's "
                           "communication_data_type; engine ddp compresses gradients with its "
                           "comm_hook", f"write comm_hook = {parallel.comm_dtype} instead"))
    if local is not None and hook.name != "none":
        out.append(Problem("local_sgd", f"local_sgd cannot be combined with comm_hook "
                           f"{hook.name}: post-local SGD is itself DDP's communication hook "
                           "(gradients all-reduced during its warm-up, none after), and DDP "
                           "takes one hook", "remove comm_hook, or local_sgd"))
    total = known_total_steps(train)
    for key, warmup in (("comm_hook", powersgd_args(hook)["warmup"] if hook.name == "powersgd"
                         else None),
                        ("local_sgd", local_sgd_args(local)["warmup"] if local else None)):
        if _is_int(warmup) and total is not None and warmup >= total:
            what = "PowerSGD never compresses" if key == "comm_hook" else "local SGD never starts"
            out.append(Problem(key, f"{key} warmup {warmup} >= the run's {total} steps, so "
                               f"{what}", f"use a warmup below {total}"))
    if dp == 1 and (hook.name != "none" or local is not None):
        out.append(Problem("comm_hook" if hook.name != "none" else "local_sgd",
                           "the data-parallel degree is 1: nothing is all-reduced",
                           "train with more ranks", "warning"))
    return out


def _hook_problems(hook: Call) -> list[Problem]:
    from nnspec.lang.diagnostics import did_you_mean

    if hook.name not in HOOKS:
        return [Problem("comm_hook", f"unknown comm_hook `{hook.name}`",
                        did_you_mean(hook.name, HOOKS) or "use " + ", ".join(HOOKS))]
    if hook.name != "powersgd":
        if hook.args or hook.kwargs:
            return [Problem("comm_hook", f"comm_hook {hook.name} takes no arguments",
                            f"write comm_hook = {hook.name}")]
        return []
    return _arg_problems("comm_hook", hook, POWERSGD_ARGS, "rank")


def _local_sgd_problems(call: Call) -> list[Problem]:
    if call.name != "every":
        return [Problem("local_sgd", f"unknown local_sgd schedule `{call.name}`",
                        "write local_sgd = every(8, warmup=0): average the parameters every 8 "
                        "steps")]
    out = _arg_problems("local_sgd", call, LOCAL_SGD_ARGS, "period")
    if not out and local_sgd_args(call)["period"] is None:
        out.append(Problem("local_sgd", "local_sgd every(...) needs its period",
                           "write every(8): average the parameters every 8 steps"))
    return out


def _arg_problems(key: str, call: Call, table: dict, first: str) -> list[Problem]:
    from nnspec.lang.diagnostics import did_you_mean

    out = []
    if len(call.args) > 1 or (call.args and first in call.kwargs):
        out.append(Problem(key, f"{call.name} takes one positional argument, its {first}",
                           f"write {call.name}(" + ", ".join(f"{k}=..." for k in table) + ")"))
    for k in call.kwargs:
        if k not in table:
            out.append(Problem(key, f"{call.name} has no argument `{k}`",
                               did_you_mean(k, table) or f"{call.name} takes " + ", ".join(table)))
    for k, v in _args(call, table, first).items():
        default, low, why = table[k]
        if v is not default and not (_is_int(v) and v >= low):
            out.append(Problem(key, f"{call.name}: {k} must be an integer >= {low}, got {v!r}",
                               f"{k}: {why}"))
    return out
