"""Losses and metrics against float64 references; evaluation sums split over batches (or ranks)
add up to the whole; metrics.csv continues a resumed run without duplicated rows."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from nnspec.lang.config import Call, TrainSpec
from nnspec.train.metrics import MetricsLog, build_objective


def objective(**train):
    return build_objective(TrainSpec(**train))


def test_classification_metrics_match_a_float64_reference():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(50, 10, generator=g), torch.randint(0, 10, (50,), generator=g)
    obj = objective(metrics=("accuracy", Call(name="top_k", kwargs={"k": 3}), "perplexity"))
    assert obj.names == ["loss", "accuracy", "top3_accuracy", "perplexity"]
    # summed over two uneven batches, as evaluation (and the all-reduce over ranks) does
    sums = obj.batch_sums(out[:17], y[:17]) + obj.batch_sums(out[17:], y[17:])
    got = obj.summarize(sums)
    logp = torch.log_softmax(out.double(), -1)
    nll = -logp[torch.arange(50), y].mean().item()
    top3 = (out.topk(3, -1).indices == y[:, None]).any(-1).double().mean().item()
    assert got["loss"] == pytest.approx(nll, rel=1e-6)
    assert got["accuracy"] == (out.argmax(-1) == y).double().mean().item()
    assert got["top3_accuracy"] == top3
    assert got["perplexity"] == pytest.approx(math.exp(nll), rel=1e-6)


def test_label_smoothing_changes_the_loss_not_the_perplexity():
    out, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    plain = objective(metrics=("perplexity",))
    smooth = objective(metrics=("perplexity",),
                       loss=Call(name="cross_entropy", kwargs={"label_smoothing": 0.2}))
    a, b = plain.summarize(plain.batch_sums(out, y)), smooth.summarize(smooth.batch_sums(out, y))
    assert a["perplexity"] == pytest.approx(b["perplexity"]) and a["loss"] != b["loss"]


def test_lm_loss_averages_over_tokens():
    out, y = torch.randn(3, 7, 11), torch.randint(0, 11, (3, 7))
    obj = objective(loss=Call(name="lm"), metrics=("accuracy", "perplexity"))
    got = obj.summarize(obj.batch_sums(out, y))
    ref = torch.nn.functional.cross_entropy(out.reshape(21, 11).double(), y.reshape(21))
    assert got["loss"] == pytest.approx(ref.item(), rel=1e-6)
    assert got["perplexity"] == pytest.approx(math.exp(ref.item()), rel=1e-6)


def test_regression_and_binary():
    mse = objective(loss=Call(name="mse"))  # default `accuracy` quietly does not apply
    assert mse.names == ["loss"]
    out, y = torch.randn(6, 2), torch.randn(6, 2)
    assert mse.summarize(mse.batch_sums(out, y))["loss"] == pytest.approx(
        ((out.double() - y.double()) ** 2).mean().item(), rel=1e-6)
    bce = objective(loss=Call(name="bce"))
    logits, labels = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [1.0], [0.0]])
    assert bce.summarize(bce.batch_sums(logits, labels))["accuracy"] == pytest.approx(1 / 3)


def test_metrics_csv_drops_rows_after_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, ["loss", "accuracy"], None, tensorboard=False)
    for step in (10, 20, 30):
        log.add(step, step / 10, "eval", 1e-3, {"loss": 1.0 / step, "accuracy": 0.5})
    MetricsLog(tmp_path, ["loss", "accuracy"], 20, tensorboard=False).add(
        30, 3.0, "eval", 1e-3, {"loss": 0.25})
    rows = list(csv.reader(open(tmp_path / "metrics.csv")))
    assert rows[0] == ["step", "epoch", "phase", "lr", "loss", "accuracy"]
    assert [r[0] for r in rows[1:]] == ["10", "20", "30"] and rows[-1][4:] == ["0.25", ""]
