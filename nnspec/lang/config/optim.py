"""Optimizer and schedule names, the arguments each takes, and the step counts of a run."""
from __future__ import annotations

from typing import Any, Optional

from nnspec.data.sklearn_sets import SKLEARN
from nnspec.lang.config.models import Call, TrainSpec
from nnspec.lang.config.optim_values import optimizer_class_name, optimizer_defaults


# Optimizers DeepSpeed builds from its JSON config (`"optimizer": {"type": ...}`); the value is
# the type name written there. Every other torch.optim class is built by the training client
# and handed to `deepspeed.initialize(optimizer=...)` (see nnspec.emit.deepspeed.client_optimizer).
JSON_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad"}
REFUSED_OPTIMIZERS = {
    "lbfgs": "LBFGS needs a closure that re-evaluates the loss on every step",
    "sparseadam": "SparseAdam only takes sparse gradients",
    "muon": "torch.optim.Muon only takes 2-D parameters",
}

# DeepSpeed's compressed-communication optimizers: 0.19 removed them (deepspeed/runtime/fp16/onebit
# is gone; tests/lang/test_ddp_checks.py checks the installed DeepSpeed), and they only ever ran
# over NCCL on GPUs. Named, they get that reason instead of "unknown optimizer".
ONEBIT_OPTIMIZERS = {"onebitadam": "1-bit Adam", "onebit_adam": "1-bit Adam",
                     "zerooneadam": "0/1 Adam", "zero_one_adam": "0/1 Adam",
                     "onebitlamb": "1-bit LAMB", "onebit_lamb": "1-bit LAMB"}

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
    """The torch.optim class a spec's optimizer name stands for (case-insensitive), or None.
    Imports torch: for runs; checks read optim_values.optimizer_class_name."""
    cls = optimizer_class_name(name)
    if cls is None:
        return None
    import torch

    return getattr(torch.optim, cls)


def optimizer_lr(optimizer: Call) -> float:
    """The learning rate an optimizer runs at: its `lr` argument, else torch's default."""
    if "lr" in optimizer.kwargs:
        return float(optimizer.kwargs["lr"])
    return float(optimizer_defaults(optimizer_class_name(optimizer.name))["lr"])


def total_steps_for(train: TrainSpec, train_samples: int) -> int:
    """Optimizer steps in a run: `steps`, else epochs x ceil(train_samples / batch_size) (the last,
    smaller batch of an epoch counts as a step; 1 epoch when neither is set)."""
    if train.steps is not None:
        return train.steps
    epochs = train.epochs if train.epochs is not None else 1
    return epochs * -(-train_samples // train.batch_size)


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
