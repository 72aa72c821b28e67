"""Losses, evaluation metrics, and where their values are written (metrics.csv, TensorBoard).

An `Objective` is the loss and metrics of a train section, resolved and checked before any data is
read. Evaluation adds per-batch sums into one float64 vector, so data-parallel ranks combine them
with a single all-reduce and every rank ends with the same numbers.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nnspec.lang.config import LOSS_TARGETS as TARGETS
from nnspec.lang.config import Call, TrainSpec, objective_problems, top_k
from nnspec.outputs import replace_file
from nnspec.train.errors import TrainError

LOWER_IS_BETTER = {"loss", "perplexity"}


@dataclass(frozen=True)
class Metric:
    name: str          # the key in final.json and metrics.csv: accuracy, top5_accuracy, perplexity
    kind: str          # accuracy, top_k, perplexity
    k: int = 1


@dataclass
class Objective:
    """The loss to minimize and the metrics to report, for one train section."""

    loss_name: str
    loss_kwargs: dict[str, Any]
    metrics: tuple[Metric, ...]

    @property
    def target(self) -> str:
        return TARGETS[self.loss_name]

    @property
    def names(self) -> list[str]:
        return ["loss"] + [m.name for m in self.metrics]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch (over samples, or over tokens for per-position outputs)."""
        out = out.float()
        if self.target == "class":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                   label_smoothing=self.loss_kwargs.get("label_smoothing", 0.0))
        if self.loss_name == "mse":
            return F.mse_loss(out, y)
        pos_weight = self.loss_kwargs.get("pos_weight")
        pos_weight = None if pos_weight is None else torch.tensor(pos_weight, device=out.device)
        return F.binary_cross_entropy_with_logits(out, y, pos_weight=pos_weight)

    def batch_sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[loss*n, n, metric sums...] for one batch; add these up, then call `summarize`."""
        out = out.float()
        n = y.numel()  # samples, tokens (per-position outputs) or elements (mse, bce)
        sums = [self.loss(out, y).double() * n, torch.tensor(float(n), dtype=torch.float64,
                                                              device=out.device)]
        for m in self.metrics:
            sums.append(self._metric_sum(m, out, y))
        return torch.stack([s.to(out.device, torch.float64) for s in sums])

    def _metric_sum(self, m: Metric, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if m.kind == "perplexity":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                   reduction="sum").double()
        if self.target == "binary":
            return ((out > 0).float() == y).sum().double()
        flat, labels = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        if m.kind == "accuracy":
            return (flat.argmax(-1) == labels).sum().double()
        top = flat.topk(min(m.k, flat.shape[-1]), dim=-1).indices
        return (top == labels[:, None]).any(-1).sum().double()

    def summarize(self, sums: torch.Tensor) -> dict[str, float]:
        sums = sums.tolist()
        n = max(sums[1], 1.0)
        result = {"loss": sums[0] / n}
        for m, total in zip(self.metrics, sums[2:]):
            mean = total / n
            result[m.name] = math.exp(min(mean, 700.0)) if m.kind == "perplexity" else mean
        return result


def build_objective(train: TrainSpec) -> Objective:
    """Resolve and check the loss and metrics of a train section.

    Raises:
        TrainError: an unknown loss or metric, an unknown argument, or a metric that does not
            apply to the loss (accuracy of a regression).
    """
    problems = [p for p in objective_problems(train) if p.key != "early_stopping"]
    if problems:  # the same rules `nnspec check` reports, located, all at once
        raise TrainError(problems[0].message, problems[0].help)
    loss, target = train.loss, TARGETS[train.loss.name]
    metrics: list[Metric] = []
    for item in train.metrics:
        call = item if isinstance(item, Call) else Call(name=item)
        if call.name == "loss" or target == "value" or (target == "binary"
                                                         and call.name != "accuracy"):
            continue  # the default `accuracy` quietly does not apply to a regression
        metrics.append(_metric(call))
    return Objective(loss.name, dict(loss.kwargs), tuple(dict.fromkeys(metrics)))


def _metric(call: Call) -> Metric:
    if call.name == "top_k":
        k = top_k(call)
        return Metric(f"top{k}_accuracy", "top_k", k)
    return Metric(call.name, call.name)


class MetricsLog:
    """Rows of metrics appended to metrics.csv and mirrored to TensorBoard (rank 0 only).

    On resume, rows and events after the checkpoint's step are dropped first, so the files read
    as one run.
    """

    def __init__(self, out_dir: Path, names: list[str], resume_step: int | None,
                 tensorboard: bool = True):
        self.path = out_dir / "metrics.csv"
        self.columns = ["step", "epoch", "phase", "lr"] + names
        if resume_step is None or not self.path.is_file():
            _write_rows(self.path, [self.columns])
        else:
            _truncate_after(self.path, self.columns, resume_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out_dir / "tensorboard"),
                                        purge_step=None if resume_step is None else resume_step + 1)

    def add(self, step: int, epoch: float, phase: str, lr: float, values: dict[str, float]) -> None:
        row = [step, f"{epoch:.4f}", phase, f"{lr:.6g}"]
        row += ["" if values.get(n) is None else f"{values[n]:.6g}" for n in self.columns[4:]]
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{phase}/{name}", value, step)
            if phase == "train":
                self.writer.add_scalar("train/lr", lr, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _write_rows(path: Path, rows: list[list[Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    replace_file(path, write)


def _truncate_after(path: Path, columns: list[str], step: int) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    keep = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    _write_rows(path, [columns] + keep)

