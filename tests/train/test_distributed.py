"""Two processes under the real `deepspeed` runner (CPU accelerator, gloo): lenet5 and digits_mlp
reach 95% on digits with ZeRO 0, 1, 2 and 3, bf16, gradient accumulation and optimizer offload; a
run whose rank is killed hard (SIGKILL) mid-training resumes with --resume in fresh processes and
ends exactly where the uninterrupted one did (ZeRO-2 and ZeRO-3); `nnspec export-weights` turns
the ZeRO shards into the weights the run ended with; every rank exits cleanly.

Each launch costs two Python start-ups plus DeepSpeed's, so the features are combined: four lenet5
runs cover the four ZeRO stages, and bf16, grad_accum 4 and offload ride along one each; the ZeRO-2
and ZeRO-3 runs save checkpoints, which the export and fault tests reuse. digits_mlp trains the
same four configurations one after another in one launch. A fault test launches twice more (the
killed run, then the resume), each about half a run: eight launches in all. `-m "not slow"` keeps
ZeRO 0 (with grad_accum 4) and ZeRO 3 (with its fault test) and digits_mlp, and drops the
ZeRO-1/bf16 and ZeRO-2/offload launches and the ZeRO-2 fault test.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main as nnspec_main
from nnspec.train.checkpoint import complete_folders

from .conftest import ROOT, subprocess_env

pytest.importorskip("deepspeed")
DEEPSPEED = Path(__import__("sys").executable).parent / "deepspeed"

TRAIN = {"epochs": 20, "batch_size": 128, "optimizer": {"name": "adamw", "kwargs": {"lr": 0.01}},
         "schedule": "warmup_cosine"}
RUNS = {
    "zero0-grad_accum4": {"zero": 0, "grad_accum": 4},
    "zero1-bf16": {"zero": 1, "precision": "bf16"},
    "zero2-offload_cpu": {"zero": 2, "offload_optimizer": "cpu"},
    "zero3-checkpoints": {"zero": 3},
}
CHECKPOINTS = {"checkpoint_every": 60, "keep_checkpoints": 4}
WITH_CHECKPOINTS = ("zero2-offload_cpu", "zero3-checkpoints")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_runs(out: Path, runs: dict, spec: str,
                module: str = "tests.train.several_runs") -> subprocess.CompletedProcess:
    """Several runs of `spec` in one launch of the runner with 2 ranks (tests/train/
    several_runs.py: RUNS.json maps a name to [train, parallel, options]), written under `out`."""
    (out / "runs.json").write_text(json.dumps(runs))
    cmd = [str(DEEPSPEED), "--num_accelerators", "2", "--master_port", str(free_port()),
           "--module", module, spec, str(out), str(out / "runs.json")]
    return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=900)


def command(out: Path, parallel: dict, train: dict, *extra: str) -> list[str]:
    return [str(DEEPSPEED), "--num_accelerators", "2", "--master_port", str(free_port()),
            "--module", "nnspec.train", "specs/lenet5.nn", "--out", str(out), "--no-progress",
            "--train-json", json.dumps(train), "--parallel-json", json.dumps(parallel), *extra]


def launch(out: Path, parallel: dict, train: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, parallel, train, *extra), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


def assert_clean_exit(r: subprocess.CompletedProcess) -> None:
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert out.count("exits successfully") == 2, out[-5000:]  # the runner, for each rank
    assert "terminate called" not in out and "Traceback" not in out, out[-5000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch each configuration once, on first use."""
    done: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}

    def get(name: str):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            train = dict(TRAIN, **(CHECKPOINTS if name in WITH_CHECKPOINTS else {}))
            done[name] = launch(out, RUNS[name], train), out
        return done[name]
    return get


def eval_rows(out: Path) -> list[list[str]]:
    return [r for r in csv.reader(open(out / "metrics.csv")) if r[2] == "eval"]


SLOW = ("zero1-bf16", "zero2-offload_cpu")  # ZeRO 0 and 3 always; these two add bf16, offload


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in RUNS])
def test_lenet5_reaches_95_percent_with_two_processes(runs, name):
    r, out = runs(name)
    assert_clean_exit(r)
    final = json.loads((out / "final.json").read_text())
    print(f"{name}: accuracy {final['accuracy']:.4f}, loss {final['loss']:.4f}")
    assert final["accuracy"] >= 0.95 and final["step"] == 20 * 12, final
    # rank 0 alone reports and writes: one result line, one row per evaluation
    assert [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")] == [final]
    assert len(eval_rows(out)) == 20
    weights = load_file(out / "model.safetensors")  # whole (gathered under ZeRO-3), fp32
    assert weights["fc1.weight"].shape == (120, 64) and weights["fc1.weight"].dtype == torch.float32




def slow_unless_zero3(name: str):
    return name if name.startswith("zero3") else pytest.param(name, marks=pytest.mark.slow)


# ---- digits_mlp: the four configurations in one launch -------------------------------------------

@pytest.fixture(scope="module")
def digits_mlp_runs(tmp_path_factory):
    """digits_mlp trained with each of RUNS' settings by the same two ranks, one after another
    (tests/train/several_runs.py): one launch instead of four."""
    out = tmp_path_factory.mktemp("digits_mlp")
    runs = {name: [TRAIN, RUNS[name]] for name in RUNS}
    return launch_runs(out, runs, "specs/digits_mlp.nn"), out


@pytest.mark.parametrize("name", list(RUNS))
def test_digits_mlp_reaches_95_percent_with_two_processes(digits_mlp_runs, name):
    r, out = digits_mlp_runs
    assert_clean_exit(r)
    final = json.loads((out / name / "final.json").read_text())
    print(f"digits_mlp {name}: accuracy {final['accuracy']:.4f}, loss {final['loss']:.4f}")
    assert final["accuracy"] >= 0.95 and final["step"] == 20 * 12, final
    printed = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " {" in line
                   and line.split(" ", 1)[0] in RUNS)
    assert json.loads(printed[name]) == final  # rank 0 alone reports
    assert len(eval_rows(out / name)) == 20
    weights = load_file(out / name / "model.safetensors")
    assert weights["fc1.weight"].shape == (128, 64) and weights["fc1.weight"].dtype == torch.float32


# ---- export-weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [slow_unless_zero3(n) for n in WITH_CHECKPOINTS])
def test_export_weights_consolidates_zero_shards(runs, tmp_path, capsys, in_root, name):
    r, out = runs(name)
    assert_clean_exit(r)
    target = tmp_path / "model.safetensors"
    code = nnspec_main(["export-weights", str(out / "checkpoints"), "-o", str(target),
                        "--spec", "specs/lenet5.nn"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "step-00000240" in printed.out  # the last step's checkpoint, the run's end
    exported, gathered = load_file(target), load_file(out / "model.safetensors")
    nnspec.load("specs/lenet5.nn").build().load_state_dict(exported, strict=True)
    assert exported.keys() == gathered.keys()
    assert all(torch.equal(exported[k], gathered[k]) for k in gathered)


# ---- a rank killed hard --------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the runner starts a launcher, which starts the ranks)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def rank_process(runner: int, rank: int) -> int:
    for pid in descendants(runner):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no process of rank {rank} under the runner")


def kill_rank_after(out: Path, parallel: dict, train: dict, step: int, rank: int,
                    log: Path) -> subprocess.CompletedProcess:
    """Launch, wait until the checkpoint of `step` is complete, SIGKILL one rank, let the
    runner give up."""
    marker = out / "checkpoints" / f"step-{step:08d}" / "nnspec.json"
    with open(log, "w") as sink:
        proc = subprocess.Popen(command(out, parallel, train), cwd=ROOT, env=subprocess_env(),
                                stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.time() + 400
            while not marker.is_file():
                assert proc.poll() is None, log.read_text()[-5000:]
                assert time.time() < deadline, "no checkpoint appeared"
                time.sleep(0.02)
            os.kill(rank_process(proc.pid, rank), signal.SIGKILL)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")


def damage(folder: Path, step: int, marker: bool) -> Path:
    """A copy of a checkpoint under a later step with a torn shard: a save cut short (no
    marker) or a file torn after it (marker)."""
    copy = folder.parent / f"step-{step:08d}"
    shutil.copytree(folder, copy)
    if not marker:
        (copy / "nnspec.json").unlink()
    shard = max((p for p in copy.glob("*_states.pt")), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    return copy


@pytest.mark.parametrize("name,rank", [("zero3-checkpoints", 0),
                                       pytest.param("zero2-offload_cpu", 1,
                                                    marks=pytest.mark.slow)])
def test_a_rank_killed_hard_resumes_to_the_same_end(runs, tmp_path, capsys, in_root, name, rank):
    """SIGKILL to one rank once the step-120 checkpoint is complete; the runner fails. --resume
    in fresh processes takes the newest complete checkpoint, passing over a newer one cut short
    and one torn after its save, and ends with the uninterrupted run's loss, weights and
    metrics, to the last bit."""
    r, full = runs(name)
    assert_clean_exit(r)
    out, train = tmp_path / "run", dict(TRAIN, **CHECKPOINTS)
    killed = kill_rank_after(out, RUNS[name], train, 120, rank, tmp_path / "killed.log")
    assert killed.returncode != 0 and killed.stdout.count("exits successfully") < 2
    assert not (out / "final.json").exists()
    newest = complete_folders(out / "checkpoints")[0]
    assert 120 <= int(newest.name[5:]) < 240
    cut, torn = damage(newest, 238, marker=False), damage(newest, 239, marker=True)
    # export-weights passes over them too, and refuses each one named directly
    exports = []
    for ckpt in (out / "checkpoints", newest, cut, torn):
        exports.append(nnspec_main(["export-weights", str(ckpt), "-o",
                                    str(tmp_path / f"{ckpt.name}.safetensors")]))
    err = capsys.readouterr().err
    assert exports == [0, 0, 2, 2], err
    assert f"{cut} is an incomplete checkpoint" in err and f"{torn} is damaged" in err
    a, b = (load_file(tmp_path / f"{n}.safetensors") for n in ("checkpoints", newest.name))
    assert all(torch.equal(a[k], b[k]) for k in a)

    resumed = launch(out, RUNS[name], train, "--resume")
    assert_clean_exit(resumed)
    assert json.loads((out / "final.json").read_text()) == \
        json.loads((full / "final.json").read_text())
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "metrics.csv").read_text() == (full / "metrics.csv").read_text()
