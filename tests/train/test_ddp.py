"""Engine ddp under the real `deepspeed` runner, two ranks, one launch (tests/train/several_runs.py)
for every case: digits_mlp trained with DDP's plain all-reduce, PowerSGD rank 4, bf16 compression
and post-local SGD every 8 steps, the PowerSGD and local SGD runs also stopped part-way and
resumed. From the "comm" figures of their final.json (counted at torch's hooks and averager):

- PowerSGD rank 4 all-reduces >= 8x fewer bytes per step than the plain all-reduce, bf16 half;
- local SGD with H = 8 makes >= 8x fewer all-reduce calls;
- each ends within 1 point of the plain run's test accuracy;
- a stopped and resumed run ends with exactly the weights, metrics and counts of the run that
  was not stopped (PowerSGD's error feedback and generator, the averager's step, per-rank RNG);
- `nnspec export-weights` turns a ddp checkpoint into weights that load strictly into build():
  the run's final weights, also where local SGD left the ranks' models different.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main as nnspec_main
from nnspec.train.safeload import safe_load

from .conftest import ROOT
from .test_distributed import assert_clean_exit, launch_runs

pytest.importorskip("deepspeed")

SPEC = "specs/digits_mlp.nn"
# 480 steps: a multiple of 8, so every local-SGD period is whole; evaluated once, at the end
TRAIN = {"steps": 480, "batch_size": 64, "schedule": {"name": "warmup_cosine",
                                                      "kwargs": {"warmup": 20}},
         "optimizer": {"name": "adamw", "kwargs": {"lr": 0.003, "weight_decay": 1e-4}},
         "checkpoint_every": 240, "keep_checkpoints": 5}
PLAIN = {"engine": "ddp"}
POWERSGD = {"engine": "ddp", "comm_hook": {"name": "powersgd", "kwargs": {"rank": 4,
                                                                          "warmup": 10}}}
LOCAL_SGD = {"engine": "ddp", "local_sgd": {"name": "every", "args": [8]}}
BF16 = {"engine": "ddp", "comm_hook": "bf16"}  # a bare word, as in a spec
RUNS = {
    "plain": [TRAIN, PLAIN],
    "powersgd": [TRAIN, POWERSGD],
    "bf16": [TRAIN, BF16],
    "local_sgd": [TRAIN, LOCAL_SGD],
    # 150 and 100: checkpoints between PowerSGD's steps and between local SGD's averages
    "powersgd_cut": [dict(TRAIN, checkpoint_every=50), POWERSGD, {"stop_at": 150}],
    "powersgd_resumed": [TRAIN, POWERSGD, {"resume": "powersgd_cut"}],
    "local_sgd_cut": [dict(TRAIN, checkpoint_every=50), LOCAL_SGD, {"stop_at": 100}],
    "local_sgd_resumed": [TRAIN, LOCAL_SGD, {"resume": "local_sgd_cut"}],
}
DIGITS_MLP_PARAMS = 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    r = launch_runs(out, RUNS, SPEC)
    assert_clean_exit(r)
    printed = dict(line.split(" ", 1) for line in r.stdout.splitlines()
                   if line.split(" ", 1)[0] in RUNS)
    return out, {name: json.loads(text) for name, text in printed.items()}


def final(launch, name: str) -> dict:
    out, printed = launch
    folder = RUNS[name][2]["resume"] if len(RUNS[name]) > 2 and "resume" in RUNS[name][2] \
        else name
    result = json.loads((out / folder / "final.json").read_text())
    assert printed[name] == result  # rank 0 alone reports
    return result


def test_plain_ddp_all_reduces_every_gradient_once_per_step(launch):
    comm = final(launch, "plain")["comm"]
    print("plain", comm)
    assert comm["bytes_per_step"] == DIGITS_MLP_PARAMS * 4 and comm["calls_per_step"] == 1
    assert comm["allreduce_calls"] == 480 and comm["steps"] == 480
    assert final(launch, "plain")["accuracy"] >= 0.95


@pytest.mark.parametrize("name, ratio_of, at_least", [
    ("powersgd", "bytes_per_step", 8), ("local_sgd", "calls_per_step", 8),
    ("bf16", "bytes_per_step", 2)])
def test_compression_sends_less_and_keeps_accuracy(launch, name, ratio_of, at_least):
    plain, run = final(launch, "plain"), final(launch, name)
    ratio = plain["comm"][ratio_of] / run["comm"][ratio_of]
    print(f"{name}: {ratio_of} {ratio:.2f}x fewer; accuracy {run['accuracy']:.4f} vs plain "
          f"{plain['accuracy']:.4f}; {run['comm']}")
    assert ratio >= at_least
    assert abs(run["accuracy"] - plain["accuracy"]) <= 0.01


@pytest.mark.parametrize("name", ["powersgd", "local_sgd"])
def test_a_stopped_run_resumes_exactly(launch, name):
    out, printed = launch
    assert printed[f"{name}_cut"]["status"] == "stopped"
    whole, resumed = final(launch, name), final(launch, f"{name}_resumed")
    for result in (whole, resumed):
        del result["comm"]["seconds_per_step"]  # this process's time, not the run's
    assert resumed == whole  # metrics, and every all-reduce count
    a = load_file(out / name / "model.safetensors")
    b = load_file(out / f"{name}_cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["powersgd", "local_sgd"])
def test_export_weights_of_a_ddp_checkpoint(launch, tmp_path, name):
    """The step-480 checkpoint exported is the run's final model: under local SGD the ranks'
    own models differ there (the last average was at step 473), and the export averages them
    as the run did."""
    out, _ = launch
    ckpt = out / name / "checkpoints" / "step-00000480"
    ranks = [safe_load(ckpt / f"rank{r}.pt")["model"] for r in (0, 1)]
    differ = any(not torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert differ == (name == "local_sgd")
    target = tmp_path / "w.safetensors"
    assert nnspec_main(["export-weights", str(ckpt), "-o", str(target), "--spec",
                        str(ROOT / SPEC)]) == 0
    exported, trained = load_file(target), load_file(out / name / "model.safetensors")
    assert exported.keys() == trained.keys()
    assert all(torch.equal(exported[k], trained[k]) for k in trained)
    nnspec.load(ROOT / SPEC).build().load_state_dict(exported, strict=True)


def test_one_process_trains_without_communication(tmp_path, caplog):
    """Outside the runner there is nothing to all-reduce: the one-process backend trains, and
    says that engine ddp's settings wait for the runner."""
    from nnspec.lang.config import Call, ParallelSpec, TrainSpec
    from nnspec.train import run

    spec = nnspec.load(ROOT / SPEC)
    train = TrainSpec(steps=12, batch_size=64)
    parallel = ParallelSpec(engine="ddp", comm_hook=Call(name="powersgd", kwargs={"rank": 2}))
    result = run(spec, train, parallel, tmp_path / "run", progress=False)
    assert result["status"] == "completed" and result["step"] == 12 and "comm" not in result
    assert "engine ddp (comm_hook, local_sgd) applies under the deepspeed runner" in caplog.text
