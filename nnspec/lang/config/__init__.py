"""The `train`, `parallel` and `compress` sections: how a spec is trained, placed and compressed,
as validated data, and the compile-time checks of a train + parallel pair.

- `models`: the sections (also `WeightsSpec`, the checkpoint name mapping) as Pydantic models (`TrainSpec`, `ParallelSpec`, `CompressSpec`, `Call`)
  and the names of data sets, schedules, losses and metrics they accept.
- `optim`: optimizer and schedule names, the arguments each takes, and a run's step count.
- `train_checks`: `check_train` (optimizer, schedule, loss, metrics) and its `Problem`.
- `parallel_checks`: `check_parallel` and `resolve_layout` for one world size.

Import from here (`from nnspec.lang.config import TrainSpec, check_parallel`); the modules import
each other directly, never this package.
"""
from nnspec.lang.config.models import (DATASETS, LOSS_ARGS, LOSS_TARGETS, LOSSES, METRIC_ARGS,
                                       METRICS, SCHEDULES, SECTIONS, Call, CompressSpec,
                                       ParallelSpec, TrainSpec, WeightsSpec)
from nnspec.lang.config.optim import (JSON_OPTIMIZERS, REFUSED_OPTIMIZERS, SCHEDULE_ARGS, _plain,
                                      known_total_steps, optimizer_lr, schedule_args,
                                      torch_optimizer_class, total_steps_for)
from nnspec.lang.config.parallel_checks import (Layout, ParallelConfigError, check_parallel,
                                                resolve_layout)
from nnspec.lang.config.train_checks import Problem, check_train, objective_problems, top_k

__all__ = [
    "DATASETS", "LOSS_ARGS", "LOSS_TARGETS", "LOSSES", "METRIC_ARGS", "METRICS", "SCHEDULES",
    "SECTIONS", "Call", "CompressSpec", "ParallelSpec", "TrainSpec", "WeightsSpec", "JSON_OPTIMIZERS",
    "REFUSED_OPTIMIZERS", "SCHEDULE_ARGS", "known_total_steps", "optimizer_lr", "schedule_args",
    "torch_optimizer_class", "total_steps_for", "Layout", "ParallelConfigError", "check_parallel",
    "resolve_layout", "Problem", "check_train", "objective_problems", "top_k",
]
