"""`compile = true` under the real `deepspeed` runner (2 CPU ranks, gloo): DeepSpeed's
`engine.compile()` compiles the engine's module in place on every rank. tiny_gpt_pipe (no
dropout, so eager and compiled runs draw nothing differently) trains 8 steps eager with ZeRO 0
and compiled with ZeRO 3 (whose parameter hooks are the hard case for dynamo) in one launch
(tests/train/compiled_runs.py): both land on the same losses, and the compiled ZeRO-3 run's sharded checkpoint exports, with
`nnspec export-weights`, to the weights the run ended with under the model's own names.

Compiling on two busy CPU cores is slow (a launch took 7 minutes with three runs, on a machine
shared with other jobs), so the launch is kept to these two. ZeRO 0 compiled, and a 2-stage
pipeline (PipelineModule.compile compiles each stage's layers), were checked by hand to land
where one process does.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main as nnspec_main

from .conftest import ROOT
from .test_distributed import assert_clean_exit, launch_runs

pytest.importorskip("deepspeed")
SPEC = "specs/tiny_gpt_pipe.nn"
TRAIN = {"data": {"name": "synthetic", "kwargs": {"size": 256}}, "steps": 8, "batch_size": 32,
         "optimizer": {"name": "adamw", "kwargs": {"lr": 3e-3}}, "loss": "lm",
         "metrics": ["accuracy"], "checkpoint_every": 8}
RUNS = {"zero0-eager": [TRAIN, {"zero": 0}],
        "zero3-compiled": [dict(TRAIN, compile=True), {"zero": 3}]}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    r = launch_runs(out, RUNS, SPEC, module="tests.train.compiled_runs")
    return r, out


def losses(out: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(out / "metrics.csv"))]


@pytest.mark.slow
def test_compiled_runs_under_the_runner_match_the_eager_run(launched, tmp_path):
    r, out = launched
    assert_clean_exit(r)
    graphs = {(name, int(rank)): int(n) for _, name, rank, n in
              (line.split() for line in r.stdout.splitlines() if line.startswith("graphs "))}
    for rank in (0, 1):
        assert graphs[("zero0-eager", rank)] == 0
        assert graphs[("zero3-compiled", rank)] > 0
    eager = losses(out / "zero0-eager")
    assert len(eager) == 2  # the train row and the evaluation at step 8
    assert losses(out / "zero3-compiled") == pytest.approx(eager, rel=1e-4)

    ckpt = out / "zero3-compiled" / "checkpoints" / "step-00000008"
    exported = tmp_path / "exported.safetensors"
    assert nnspec_main(["export-weights", str(ckpt), "-o", str(exported), "--spec",
                        str(ROOT / SPEC)]) == 0
    got, final = load_file(exported), load_file(out / "zero3-compiled" / "model.safetensors")
    assert set(got) == set(final) == set(nnspec.load(ROOT / SPEC).build().state_dict())
    for key in got:
        torch.testing.assert_close(got[key], final[key])
