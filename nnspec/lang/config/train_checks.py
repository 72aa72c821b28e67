"""Compile-time checks of a `train` section: optimizer, schedule, loss and metrics."""
from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional

from nnspec.lang.config.models import (LOSS_ARGS, LOSS_TARGETS, METRIC_ARGS, Call, ParallelSpec,
                                       TrainSpec)
from nnspec.lang.config.optim import (_SCHEDULE_ARG_RULES, JSON_OPTIMIZERS, ONEBIT_OPTIMIZERS,
                                      REFUSED_OPTIMIZERS, SCHEDULE_ARGS, _is_int,
                                      known_total_steps)
from nnspec.lang.config.optim_table import DEEPSPEED_VERSION, TORCH_OPTIMIZERS
from nnspec.lang.config.optim_values import (optimizer_class_name, optimizer_defaults,
                                             value_problems)


class Problem(NamedTuple):
    """One inconsistency. `key` names the setting to point at (a TrainSpec or ParallelSpec field),
    `help` says the fix. Warnings (`severity="warning"`) do not stop a compile."""

    key: str
    message: str
    help: Optional[str] = None
    severity: Literal["error", "warning"] = "error"

    @property
    def section(self) -> str:
        return "parallel" if self.key in ParallelSpec.model_fields else "train"



def check_train(train: TrainSpec, parallel: Optional[ParallelSpec] = None) -> list[Problem]:
    """Problems with the optimizer, schedule, loss and metrics: names, arguments, values
    (read from the parameter table: no optimizer is constructed, torch is not imported)."""
    from nnspec.lang.diagnostics import did_you_mean

    out: list[Problem] = []
    opt = train.optimizer
    name = opt.name.lower()
    cls = None
    if name in ONEBIT_OPTIMIZERS:
        out.append(Problem("optimizer", f"optimizer {opt.name} cannot be used: DeepSpeed "
                           f"{DEEPSPEED_VERSION} (the one installed) has no "
                           f"{ONEBIT_OPTIMIZERS[name]} (0.19 removed its 1-bit optimizers), and "
                           "they need NCCL on GPUs",
                           "for compressed gradients set engine = ddp and comm_hook = "
                           "powersgd(rank=4) in the parallel section (gloo and NCCL)"))
    elif name in REFUSED_OPTIMIZERS:
        out.append(Problem("optimizer", f"optimizer {opt.name} cannot be used: "
                           f"{REFUSED_OPTIMIZERS[name]}", "use adamw, adam, sgd or adagrad"))
    else:
        cls = optimizer_class_name(opt.name)
        if cls is None:
            names = [*JSON_OPTIMIZERS, *(c.lower() for c in TORCH_OPTIMIZERS
                                         if c.lower() not in REFUSED_OPTIMIZERS)]
            out.append(Problem("optimizer", f"unknown optimizer `{opt.name}`",
                               did_you_mean(name, names) or "use adamw, adam, sgd, adagrad or the "
                               "name of a torch.optim class"))
    if cls is not None:
        accepted = list(optimizer_defaults(cls))
        if opt.args:
            out.append(Problem("optimizer", f"optimizer {opt.name} takes keyword arguments only, "
                               f"got {len(opt.args)} positional",
                               f"write {opt.name}(lr=...) with the names of {cls}'s arguments"))
        bad = [k for k in opt.kwargs if k not in accepted]
        for k in bad:
            hint = ("gradient clipping is the train setting clip_grad_norm"
                    if k in ("max_grad_norm", "clip_grad_norm") else
                    did_you_mean(k, accepted) or f"{cls} takes " + ", ".join(accepted))
            out.append(Problem("optimizer", f"optimizer {opt.name} has no argument `{k}`", hint))
        offload = parallel is not None and parallel.offload_optimizer != "none" and parallel.zero
        if name == "adagrad" and offload:
            # with offload_optimizer DeepSpeed builds its own DeepSpeedCPUAdagrad
            # (deepspeed/ops/adagrad/cpu_adagrad.py), which takes only these
            cpu_args = ("lr", "eps", "weight_decay")
            for k in opt.kwargs:
                if k in accepted and k not in cpu_args:
                    out.append(Problem(
                        "optimizer", f"optimizer adagrad has no argument `{k}` with "
                        f"offload_optimizer {parallel.offload_optimizer}: DeepSpeed then uses its "
                        "CPU Adagrad, which takes lr, eps and weight_decay only",
                        f"remove `{k}`, or set offload_optimizer = none"))
        if not opt.args:
            good = {k: v for k, v in opt.kwargs.items() if k in accepted}
            out += [Problem("optimizer", f"optimizer {opt.name}: {message}", help)
                    for message, help in value_problems(cls, good)]

    sched = train.schedule
    if sched.name not in SCHEDULE_ARGS:
        out.append(Problem("schedule", f"unknown schedule `{sched.name}`",
                           did_you_mean(sched.name, SCHEDULE_ARGS) or
                           "use " + ", ".join(SCHEDULE_ARGS)))
        return out + objective_problems(train)
    table = SCHEDULE_ARGS[sched.name]
    if sched.args:
        out.append(Problem("schedule", f"schedule {sched.name} takes keyword arguments only, got "
                           f"{len(sched.args)} positional",
                           f"write {sched.name}(" + ", ".join(f"{k}=..." for k in table) + ")"
                           if table else f"write {sched.name}"))
    for k, v in sched.kwargs.items():
        if k not in table:
            out.append(Problem("schedule", f"schedule {sched.name} has no argument `{k}`",
                               did_you_mean(k, table)
                               or f"{sched.name} takes " + ", ".join(table)))
            continue
        test, what = _SCHEDULE_ARG_RULES[k]
        if not test(v):
            out.append(Problem("schedule", f"schedule {sched.name}: {k} must be {what}, got {v!r}",
                               None))
    warmup = sched.kwargs.get("warmup", 0)
    total = known_total_steps(train)
    if _is_int(warmup) and warmup > 0 and total is not None and warmup >= total:
        # the DeepSpeed config cannot be written for such a run: say so here, not in compile
        what = f"steps {total}" if train.steps is not None else f"the run's {total} steps"
        out.append(Problem("schedule", f"schedule {sched.name}: warmup {warmup} >= {what}, so "
                           "the lr never reaches its peak", f"use a warmup below {total}"))
    return out + objective_problems(train)


def objective_problems(train: TrainSpec) -> list[Problem]:
    """Problems with the loss and metrics: names, arguments, metrics that do not fit the loss
    (train.metrics.build_objective raises the first; check reports them all)."""
    from nnspec.lang.diagnostics import did_you_mean

    out: list[Problem] = []
    loss = train.loss
    target = LOSS_TARGETS.get(loss.name)
    if target is None:
        out.append(Problem("loss", f"unknown loss `{loss.name}`", did_you_mean(
            loss.name, LOSS_TARGETS) or "use " + ", ".join(LOSS_TARGETS)))
    else:
        out += _argument_problems(loss, LOSS_ARGS[loss.name], "loss")
    explicit = "metrics" in train.model_fields_set
    for item in train.metrics:
        call = item if isinstance(item, Call) else Call(name=item)
        if call.name not in METRIC_ARGS:
            out.append(Problem("metrics", f"unknown metric `{call.name}`", did_you_mean(
                call.name, METRIC_ARGS) or "use " + ", ".join(METRIC_ARGS)))
            continue
        out += _argument_problems(call, METRIC_ARGS[call.name], "metric")
        k = top_k(call)
        if call.name == "top_k" and (not _is_int(k) or k < 1):
            out.append(Problem("metrics", f"top_k needs a positive integer k, got {k!r}",
                               "top_k(k=5)"))
        if explicit and call.name != "loss" and (
                target == "value" or (target == "binary" and call.name != "accuracy")):
            out.append(Problem("metrics", f"metric `{call.name}` does not apply to the "
                               f"{loss.name} loss", "use metrics that fit the loss, or only "
                               "`loss`"))
    if train.early_stopping and not train.eval_every and not train.epochs:
        out.append(Problem("early_stopping", "early_stopping counts evaluations, but a run "
                           "without epochs has none before the end", "set eval_every"))
    return out


def top_k(call: Call) -> Any:
    """The k of a top_k metric: top_k(k=5), top_k(5) or top_k (5)."""
    return call.kwargs.get("k", call.args[0] if call.args else 5)


def _argument_problems(call: Call, allowed: set[str], what: str) -> list[Problem]:
    from nnspec.lang.diagnostics import did_you_mean

    key = "loss" if what == "loss" else "metrics"
    out = []
    if call.args and call.name != "top_k":
        out.append(Problem(key, f"{what} `{call.name}` takes keyword arguments only",
                           f"write {call.name}(name=value)"))
    for arg in call.kwargs:
        if arg not in allowed:
            out.append(Problem(key, f"{what} `{call.name}` has no argument `{arg}`",
                               did_you_mean(arg, allowed) or (
                                   f"{call.name} takes " + ", ".join(sorted(allowed)) if allowed
                                   else f"{call.name} takes no arguments")))
    return out
