"""The `train` and `parallel` sections: how a spec is trained and placed, as validated data.

A section is a list of `key = value` settings. Values are spec expressions: numbers, strings,
lists, bare words (`bf16`, `cpu`, `digits`) and calls with keyword arguments
(`adamw(lr=3e-4, weight_decay=0.01)`). Each section is one Pydantic model; an unknown key gets a
did-you-mean, a bad value a located diagnostic.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt,
                      field_validator)

from nnspec.data.sklearn_sets import SKLEARN


class Call(BaseModel):
    """A named choice with arguments, as written `adamw(lr=3e-4)` (or a bare `adamw`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


DATASETS = ("digits", "iris", "wine", "breast_cancer", "synthetic", "npz", "pt", "csv", "images",
            "text")
SCHEDULES = ("constant", "warmup_linear", "warmup_cosine", "one_cycle", "reduce_on_plateau")
LOSSES = ("cross_entropy", "mse", "bce", "lm")
METRICS = ("accuracy", "top_k", "perplexity", "loss")
# what each loss wants as targets: class indices, 0/1 floats or values (train.metrics builds the
# loss; check needs the same table without importing torch)
LOSS_TARGETS = {"cross_entropy": "class", "lm": "class", "mse": "value", "bce": "binary"}
LOSS_ARGS = {"cross_entropy": {"label_smoothing"}, "lm": {"label_smoothing"}, "mse": set(),
             "bce": {"pos_weight"}}
METRIC_ARGS = {"accuracy": set(), "top_k": {"k"}, "perplexity": set(), "loss": set()}


class TrainSpec(_Section):
    """How to train: data, length, optimizer, schedule, loss, metrics, checkpoints."""

    data: Call = Field(Call(name="digits"), description="data set: digits, iris, wine, "
                       "breast_cancer, synthetic(...), npz(path), pt(path), csv(path, target=...), "
                       "images(folder), text(path)")
    split: float = Field(0.8, gt=0.0, lt=1.0, description="fraction of the data used for training; "
                         "the rest is the test set (split deterministically from the seed)")
    epochs: Optional[PositiveInt] = Field(None, description="passes over the training data")
    steps: Optional[PositiveInt] = Field(None, description="optimizer steps (instead of epochs)")
    batch_size: PositiveInt = Field(64, description="global batch size (all ranks, all "
                                    "accumulation steps)")
    optimizer: Call = Field(Call(name="adamw", kwargs={"lr": 1e-3}),
                            description="adam, adamw, sgd, adagrad or any torch.optim class, with "
                            "its arguments")
    schedule: Call = Field(Call(name="constant"), description="learning-rate schedule: "
                           + ", ".join(SCHEDULES))
    loss: Call = Field(Call(name="cross_entropy"), description="cross_entropy(label_smoothing=...), "
                       "mse, bce, lm (next-token)")
    metrics: tuple[Union[str, Call], ...] = Field(("accuracy",), description="accuracy, "
                                                 "top_k(k=5), perplexity")
    clip_grad_norm: Optional[PositiveFloat] = Field(None, description="clip the gradient norm")
    seed: NonNegativeInt = Field(0, description="seeds initialization, data split and shuffling")
    eval_every: Optional[PositiveInt] = Field(None, description="evaluate every N steps (always "
                                              "at the end)")
    early_stopping: Optional[PositiveInt] = Field(None, description="stop after N evaluations "
                                                  "without improvement")
    checkpoint_every: Optional[PositiveInt] = Field(None, description="save a checkpoint every N "
                                                    "steps")
    keep_checkpoints: PositiveInt = Field(3, description="how many checkpoints to keep")


class ParallelSpec(_Section):
    """How to place the model: data parallelism, ZeRO, offload, precision, pipeline."""

    data_parallel: Union[PositiveInt, Literal["auto"]] = Field(
        "auto", description="data-parallel degree, or auto (world size / pipeline stages)")
    zero: Literal[0, 1, 2, 3] = Field(0, description="ZeRO stage")
    offload_optimizer: Literal["none", "cpu", "nvme"] = Field("none", description="where "
                                                              "optimizer states live")
    offload_param: Literal["none", "cpu", "nvme"] = Field("none", description="where parameters "
                                                          "live (ZeRO-3 only)")
    nvme_path: Optional[str] = Field(None, description="folder for nvme offload")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="training precision")
    micro_batch: Optional[PositiveInt] = Field(None, description="samples per rank per forward "
                                               "(default: batch_size / (grad_accum x data_parallel))")
    grad_accum: PositiveInt = Field(1, description="micro-batches per optimizer step (default: "
                                    "batch_size / (micro_batch x data_parallel) when micro_batch "
                                    "is given, else 1)")
    activation_checkpointing: tuple[str, ...] = Field((), description="names or patterns of "
                                                      "blocks whose activations are recomputed")
    pipeline_stages: PositiveInt = Field(1, description="pipeline stages (1: no pipeline)")
    partition: str = Field("parameters", description="how layers are split into stages: "
                           "parameters, uniform or type:REGEX")
    stage_boundaries: tuple[str, ...] = Field((), description="explicit placement: the top-level "
                                              "layers that start stages 1, 2, ...")
    comm_dtype: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="precision of the "
                                                        "gradient all-reduce")


class CompressSpec(_Section):
    """How to compress the model: pruning, quantization, distillation (see nnspec.compress)."""

    prune: tuple[Call, ...] = Field((), description="pruning directives: magnitude(0.9, on=[...], "
                                    "scope=global, schedule=cubic(start=0, end=300), skip=[...]), "
                                    "random(...), channels(0.5, on=[...], norm=2), nm(2, 4, ...)")
    quantize: tuple[Call, ...] = Field((), description="quantization directives: dynamic(int8, "
                                       "on=[linear, lstm]), static(int8, calibrate=8), qat(int8), "
                                       "weight_only(int8 | int4), cast(fp16 | bf16); skip=[...]")
    distill: Optional[Call] = Field(None, description="teacher(\"teacher.nn\", weights="
                                    "\"t.safetensors\", temperature=4, alpha=0.9, "
                                    "features=[[\"student\", \"teacher\"]], mixup=0, seeds=1)")
    finetune_epochs: NonNegativeInt = Field(0, description="epochs of training after pruning "
                                            "(and of quantization-aware training)")
    finetune_lr: Optional[PositiveFloat] = Field(None, description="learning rate of fine-tuning "
                                                 "(default: the train section's optimizer lr / 10)")
    order: tuple[Literal["distill", "prune", "quantize"], ...] = Field(
        ("distill", "prune", "quantize"), description="the order the directives apply in")
    latency_batch: PositiveInt = Field(64, description="batch size of the latency measurement")
    latency_runs: PositiveInt = Field(30, description="timed forwards per model (the median is "
                                      "reported)")
    threads: PositiveInt = Field(1, description="CPU threads of the whole run (training and "
                                 "latency): one thread measures steadily on a shared machine")

    @field_validator("prune", "quantize", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, Call) else v


SECTIONS: dict[str, type[_Section]] = {"train": TrainSpec, "parallel": ParallelSpec,
                                       "compress": CompressSpec}


# --------------------------------------------------------------------------------------------
# Optimizer and schedule names, and the arguments each takes.

# Optimizers DeepSpeed builds from its JSON config (`"optimizer": {"type": ...}`); the value is
# the type name written there. Every other torch.optim class is built by the training client
# and handed to `deepspeed.initialize(optimizer=...)` (see nnspec.emit.deepspeed.client_optimizer).
JSON_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad"}
REFUSED_OPTIMIZERS = {
    "lbfgs": "LBFGS needs a closure that re-evaluates the loss on every step",
    "sparseadam": "SparseAdam only takes sparse gradients",
    "muon": "torch.optim.Muon only takes 2-D parameters",
}

# name -> {argument: (default, description)}. The same table drives the PyTorch trainer and the
# DeepSpeed scheduler block (nnspec.emit.deepspeed), so the two agree on what each name means.
SCHEDULE_ARGS: dict[str, dict[str, tuple[Any, str]]] = {
    "constant": {
        "warmup": (0, "optimizer steps of linear warm-up from 0 to the optimizer's lr"),
    },
    "warmup_linear": {
        "warmup": (0, "optimizer steps of linear warm-up; then linear decay to 0 at the last step"),
    },
    "warmup_cosine": {
        "warmup": (0, "optimizer steps of linear warm-up; then cosine decay"),
        "min_ratio": (0.0, "the lr at the last step, as a fraction of the optimizer's lr"),
    },
    "one_cycle": {
        "max_lr": (None, "the peak lr (default: the optimizer's lr)"),
        "div_factor": (25.0, "the cycle starts and ends at max_lr / div_factor"),
        "pct_start": (0.3, "the fraction of the steps spent raising the lr"),
    },
    "reduce_on_plateau": {
        "factor": (0.1, "the lr is multiplied by this when the test metric stops improving"),
        "patience": (10, "evaluations without improvement before the lr is reduced"),
    },
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# argument -> (test, what it must be)
_SCHEDULE_ARG_RULES = {
    "warmup": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "min_ratio": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "max_lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "div_factor": (lambda v: _is_number(v) and v >= 1, "a number >= 1"),
    "pct_start": (lambda v: _is_number(v) and 0 < v < 1, "a number between 0 and 1"),
    "factor": (lambda v: _is_number(v) and 0 < v < 1, "a number between 0 and 1"),
    "patience": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}


def schedule_args(schedule: Call) -> dict[str, Any]:
    """The schedule's arguments with defaults filled in (assumes `check_train` passed)."""
    table = SCHEDULE_ARGS[schedule.name]
    return {k: schedule.kwargs.get(k, default) for k, (default, _) in table.items()}


def torch_optimizer_class(name: str):
    """The torch.optim class a spec's optimizer name stands for (case-insensitive), or None."""
    import torch

    wanted = name.lower()
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if (attr.lower() == wanted and isinstance(cls, type)
                and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer):
            return cls
    return None


def optimizer_lr(optimizer: Call) -> float:
    """The learning rate an optimizer runs at: its `lr` argument, else torch's default."""
    import inspect

    if "lr" in optimizer.kwargs:
        return float(optimizer.kwargs["lr"])
    cls = torch_optimizer_class(optimizer.name)
    default = inspect.signature(cls).parameters["lr"].default if cls is not None else None
    return float(default)


def total_steps_for(train: TrainSpec, train_samples: int) -> int:
    """Optimizer steps in a run: `steps`, else epochs x ceil(train_samples / batch_size) (the last,
    smaller batch of an epoch counts as a step; 1 epoch when neither is set)."""
    if train.steps is not None:
        return train.steps
    epochs = train.epochs if train.epochs is not None else 1
    return epochs * -(-train_samples // train.batch_size)


# --------------------------------------------------------------------------------------------
# Compile-time checks of a train + parallel pair for one world size.


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


class ParallelConfigError(ValueError):
    """Raised by `resolve_layout` (and the emitters) when `check_parallel` found errors."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{p.key}: {p.message}" for p in problems))


class Layout(NamedTuple):
    """How a global batch is split, for one world size: batch_size = micro_batch x grad_accum x
    data_parallel, and world_size = data_parallel x pipeline_stages."""

    world_size: int
    data_parallel: int
    pipeline_stages: int
    batch_size: int
    micro_batch: int
    grad_accum: int


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _multiples_near(n: int, k: int) -> str:
    low, high = (n // k) * k, (n // k + 1) * k
    return f"{low} or {high}" if low > 0 else str(high)


def _data_parallel(parallel: ParallelSpec, world_size: int) -> Optional[int]:
    stages = parallel.pipeline_stages
    if world_size % stages:
        return None
    if parallel.data_parallel == "auto":
        return world_size // stages
    return parallel.data_parallel if parallel.data_parallel * stages == world_size else None


def _layout_problems(train: TrainSpec, parallel: ParallelSpec, world_size: int,
                     out: list[Problem]) -> Optional[Layout]:
    stages, dp_setting = parallel.pipeline_stages, parallel.data_parallel
    if world_size % stages:
        divs = ", ".join(map(str, _divisors(world_size)))
        out.append(Problem(
            "pipeline_stages", f"pipeline_stages {stages} does not divide the world size "
            f"{world_size}",
            f"launch a multiple of {stages} processes, or set pipeline_stages to a divisor of "
            f"{world_size} ({divs})"))
        return None
    if dp_setting != "auto" and dp_setting * stages != world_size:
        out.append(Problem(
            "data_parallel", f"data_parallel {dp_setting} x pipeline_stages {stages} = "
            f"{dp_setting * stages} != world size {world_size}",
            f"set data_parallel = {world_size // stages}, or data_parallel = auto"))
        return None
    dp = _data_parallel(parallel, world_size)
    batch, micro = train.batch_size, parallel.micro_batch
    accum, accum_given = parallel.grad_accum, "grad_accum" in parallel.model_fields_set
    if micro is not None and accum_given:
        if micro * accum * dp != batch:
            fixes = []
            if batch % (accum * dp) == 0:
                fixes.append(f"micro_batch = {batch // (accum * dp)}")
            if batch % (micro * dp) == 0:
                fixes.append(f"grad_accum = {batch // (micro * dp)}")
            fixes.append(f"batch_size = {micro * accum * dp}")
            out.append(Problem(
                "micro_batch", f"batch_size {batch} != micro_batch {micro} x grad_accum {accum} x "
                f"data-parallel {dp} = {micro * accum * dp}",
                "set " + ", or ".join(fixes)))
            return None
    elif micro is not None:
        if batch % (micro * dp):
            out.append(Problem(
                "micro_batch", f"batch_size {batch} is not divisible by micro_batch {micro} x "
                f"data-parallel {dp} = {micro * dp}",
                f"set batch_size = {_multiples_near(batch, micro * dp)}, or a micro_batch that "
                f"divides batch_size / data-parallel" if batch % dp == 0 else
                f"set batch_size = {_multiples_near(batch, micro * dp)}"))
            return None
        accum = batch // (micro * dp)
    else:
        if batch % (accum * dp):
            key = "grad_accum" if accum_given else "batch_size"
            per_rank = (f", or grad_accum to a divisor of {batch // dp} (batch_size / "
                        f"data-parallel)" if batch % dp == 0 and accum_given else "")
            out.append(Problem(
                key, f"batch_size {batch} is not divisible by grad_accum {accum} x data-parallel "
                f"{dp} = {accum * dp}",
                f"set batch_size = {_multiples_near(batch, accum * dp)}{per_rank}"))
            return None
        micro = batch // (accum * dp)
    return Layout(world_size, dp, stages, batch, micro, accum)


def resolve_layout(train: TrainSpec, parallel: ParallelSpec, world_size: int) -> Layout:
    """The batch split for this world size; raises ParallelConfigError when it has none."""
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world size must be a positive integer, got {world_size!r}")
    problems: list[Problem] = []
    layout = _layout_problems(train, parallel, world_size, problems)
    if layout is None:
        raise ParallelConfigError(problems)
    return layout


def check_train(train: TrainSpec, parallel: Optional[ParallelSpec] = None) -> list[Problem]:
    """Problems with the optimizer, schedule, loss and metrics: names, arguments, values."""
    import inspect

    from nnspec.lang.diagnostics import did_you_mean

    out: list[Problem] = []
    opt = train.optimizer
    name = opt.name.lower()
    cls = None
    if name in REFUSED_OPTIMIZERS:
        out.append(Problem("optimizer", f"optimizer {opt.name} cannot be used: "
                           f"{REFUSED_OPTIMIZERS[name]}", "use adamw, adam, sgd or adagrad"))
    else:
        cls = torch_optimizer_class(opt.name)
        if cls is None:
            import torch

            names = [*JSON_OPTIMIZERS, *(a.lower() for a in dir(torch.optim)
                                         if torch_optimizer_class(a) is not None)]
            out.append(Problem("optimizer", f"unknown optimizer `{opt.name}`",
                               did_you_mean(name, names) or "use adamw, adam, sgd, adagrad or the "
                               "name of a torch.optim class"))
    if cls is not None:
        accepted = [p for p in inspect.signature(cls).parameters if p != "params"]
        if opt.args:
            out.append(Problem("optimizer", f"optimizer {opt.name} takes keyword arguments only, "
                               f"got {len(opt.args)} positional",
                               f"write {opt.name}(lr=...) with the names of {cls.__name__}'s "
                               "arguments"))
        bad = [k for k in opt.kwargs if k not in accepted]
        for k in bad:
            hint = ("gradient clipping is the train setting clip_grad_norm"
                    if k in ("max_grad_norm", "clip_grad_norm") else
                    did_you_mean(k, accepted) or f"{cls.__name__} takes " + ", ".join(accepted))
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
        if not bad and not opt.args:
            import torch

            try:
                cls([torch.nn.Parameter(torch.zeros(1))], **_plain(opt.kwargs))
            except (ValueError, TypeError) as e:
                out.append(Problem("optimizer", f"optimizer {opt.name}: {e}", None))

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


def known_total_steps(train: TrainSpec) -> Optional[int]:
    """The run's optimizer steps when they are known before loading data: `steps`, or epochs of
    a data set that ships with scikit-learn (the same count the DeepSpeed config is written for)."""
    if train.steps is not None:
        return train.steps
    known = SKLEARN.get(getattr(train.data, "name", None))
    if known is None or not _is_int(train.batch_size) or train.batch_size < 1:
        return None
    return total_steps_for(train, int(known.samples * train.split))


def _plain(value: Any) -> Any:
    """Spec values as JSON-ready Python: tuples become lists, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _partition_ok(part: str) -> bool:
    import re

    if part in ("parameters", "uniform"):
        return True
    if not part.startswith("type:"):
        return False
    try:
        re.compile(part[5:])
    except re.error:
        return False
    return True


def check_parallel(train: TrainSpec, parallel: ParallelSpec, world_size: int) -> list[Problem]:
    """Every inconsistency of train + parallel at this world size, errors and warnings, in a
    fixed order. Includes `check_train`'s problems."""
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world size must be a positive integer, got {world_size!r}")
    out = check_train(train, parallel)
    layout = _layout_problems(train, parallel, world_size, out)
    zero, stages = parallel.zero, parallel.pipeline_stages
    given = parallel.model_fields_set

    # ZeRO and offload (deepspeed/runtime/pipe/engine.py, zero/offload_config.py)
    if stages > 1 and zero >= 2:
        out.append(Problem("zero", f"zero {zero} cannot be combined with pipeline_stages "
                           f"{stages}: DeepSpeed's pipeline engine refuses ZeRO-2 and ZeRO-3",
                           "set zero = 1 (or 0), or pipeline_stages = 1"))
    if parallel.offload_param != "none" and zero != 3:
        out.append(Problem("offload_param", f"offload_param {parallel.offload_param} needs zero 3, "
                           f"but zero is {zero}",
                           "set zero = 3, or offload_param = none (only ZeRO-3 partitions "
                           "parameters; other stages would ignore the setting)"))
    if parallel.offload_optimizer != "none" and zero == 0:
        out.append(Problem("offload_optimizer", f"offload_optimizer {parallel.offload_optimizer} "
                           "needs zero 1, 2 or 3, but zero is 0",
                           "set zero = 1 or higher, or offload_optimizer = none"))
    nvme_keys = [k for k in ("offload_optimizer", "offload_param")
                 if getattr(parallel, k) == "nvme"]
    if parallel.nvme_path is None:
        for k in nvme_keys:
            out.append(Problem(k, f"{k} nvme needs nvme_path", "set nvme_path = \"/path/to/nvme\" "
                               "(a folder on a fast local disk, the same on every machine)"))
    elif not nvme_keys:
        out.append(Problem("nvme_path", "nvme_path is set but nothing is offloaded to nvme",
                           "set offload_optimizer or offload_param to nvme, or remove nvme_path",
                           "warning"))

    # pipeline placement
    if stages == 1:
        if parallel.stage_boundaries:
            out.append(Problem("stage_boundaries", "stage_boundaries needs pipeline_stages > 1",
                               f"set pipeline_stages = {len(parallel.stage_boundaries) + 1}, or "
                               "remove stage_boundaries"))
        if "partition" in given and _partition_ok(parallel.partition):
            out.append(Problem("partition", "partition has no effect with pipeline_stages 1",
                               "remove partition, or set pipeline_stages > 1", "warning"))
    else:
        if parallel.stage_boundaries and len(parallel.stage_boundaries) != stages - 1:
            n = len(parallel.stage_boundaries)
            out.append(Problem(
                "stage_boundaries", f"stage_boundaries names {n} layer{'s' if n != 1 else ''}, but "
                f"pipeline_stages {stages} needs {stages - 1} (the first layer of each stage after "
                "the first)", f"name {stages - 1} layer{'s' if stages > 2 else ''}, or set "
                f"pipeline_stages = {n + 1}"))
        if parallel.stage_boundaries and "partition" in given:
            out.append(Problem("partition", "partition and stage_boundaries both place the "
                               "pipeline stages", "keep one of them"))
    part = parallel.partition
    if part not in ("parameters", "uniform") and not part.startswith("type:"):
        out.append(Problem("partition", f"unknown partition `{part}`",
                           "use parameters, uniform or type:REGEX"))
    elif part.startswith("type:"):
        import re

        try:
            re.compile(part[5:])
        except re.error as e:
            out.append(Problem("partition", f"partition {part}: bad regular expression ({e})",
                               None))
    if stages > 1 and layout is not None and layout.grad_accum < stages:
        out.append(Problem(
            "grad_accum", f"grad_accum {layout.grad_accum} < pipeline_stages {stages}: each step "
            f"has fewer micro-batches than stages, so stages sit idle",
            f"use grad_accum >= {stages} (a smaller micro_batch)", "warning"))

    # precision and communication
    if parallel.precision == "fp16":
        out.append(Problem("precision", "precision fp16 needs GPUs: DeepSpeed's CPU accelerator "
                           "refuses fp16 training (\"Type fp16 is not supported on your device\")",
                           "use precision bf16 to train on CPUs", "warning"))
    dp = layout.data_parallel if layout is not None else _data_parallel(parallel, world_size)
    comm, prec = parallel.comm_dtype, parallel.precision
    if comm != "fp32":
        if dp == 1:
            out.append(Problem("comm_dtype", f"comm_dtype {comm} has no effect: the data-parallel "
                               "degree is 1, so no gradients are all-reduced",
                               "remove comm_dtype, or train with more data-parallel ranks",
                               "warning"))
        if {comm, prec} == {"fp16", "bf16"}:
            why = ("bf16 gradients outside fp16's range (about 6e-8 to 65504) flush to zero or "
                   "overflow, and bf16 training has no loss scaling to prevent it"
                   if comm == "fp16" else
                   "bf16 keeps 8 bits of mantissa to fp16's 11, so the all-reduce rounds the "
                   "gradients more coarsely than they were computed")
            out.append(Problem("comm_dtype", f"comm_dtype {comm} with precision {prec}: {why}",
                               f"use comm_dtype {prec} or fp32", "warning"))
    if zero and dp == 1 and parallel.offload_optimizer == "none" and \
            parallel.offload_param == "none":
        out.append(Problem("zero", f"zero {zero} partitions nothing: the data-parallel degree is 1",
                           "train with more data-parallel ranks, offload to cpu, or set zero = 0",
                           "warning"))
    return out
