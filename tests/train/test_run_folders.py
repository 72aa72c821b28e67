"""Every run gets its own folder, and no run empties another's (issue 9, defect 6)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.train import runs

from .conftest import ROOT, subprocess_env

MLP = str(ROOT / "specs/digits_mlp.nn")
LENET = str(ROOT / "specs/lenet5.nn")
STEPS = ["--set", "train.schedule=constant", "--set", "train.checkpoint_every=5"]
SHORT = ["--no-progress", "--set", "train.steps=10", *STEPS]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("nnspec: error: ") and err.count("\n") == 1, err
    return err


def test_each_run_gets_its_own_folder_and_an_earlier_run_is_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", MLP, *SHORT]) == 0
    assert "run folder: runs/digits_mlp/version_0" in capsys.readouterr().err
    first = files(tmp_path / "runs/digits_mlp/version_0")
    assert {"final.json", "model.safetensors", "metrics.csv", "run.json",
            "checkpoints/step-00000010.pt"} <= set(first)
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in first)
    assert main(["train", MLP, *SHORT]) == 0
    assert "run folder: runs/digits_mlp/version_1" in capsys.readouterr().err
    assert files(tmp_path / "runs/digits_mlp/version_0") == first  # untouched, to the byte
    assert (tmp_path / "runs/digits_mlp/version_1/final.json").is_file()
    record = json.loads((tmp_path / "runs/digits_mlp/version_1/run.json").read_text())
    assert record == {"model": "digits_mlp", "spec": "digits_mlp.nn"}


def test_concurrent_runs_never_claim_the_same_folder(tmp_path):
    (tmp_path / "m" / "version_3").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    claimed, start = [], threading.Barrier(12)

    def claim():
        start.wait()
        claimed.append(runs.new_run_folder("m", tmp_path))

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in claimed) == sorted(f"version_{n}" for n in range(4, 16))


def test_a_non_empty_out_is_refused_and_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", MLP, "--out", str(out), *SHORT]) == 0
    capsys.readouterr()
    before = files(out)
    assert main(["train", MLP, "--out", str(out), *SHORT]) == 2
    err = one_error_line(capsys)
    assert "--overwrite" in err and "--resume" in err
    assert files(out) == before


def test_overwrite_replaces_only_the_files_nnspec_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "final.json").write_text("{}")  # an earlier run's result, to be replaced
    assert main(["train", MLP, "--out", str(out), *SHORT, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "final.json").read_text())["step"] == 10


def test_resume_continues_only_a_run_of_the_same_model(tmp_path, capsys):
    out = tmp_path / "out"
    stopped = SHORT
    assert main(["train", MLP, "--out", str(out), *stopped]) == 0
    capsys.readouterr()
    before = files(out)
    assert main(["train", LENET, "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "is a run of model `digits_mlp`" in one_error_line(capsys)
    assert files(out) == before
    assert main(["train", MLP, "--out", str(out), "--resume", "--no-progress",
                 "--set", "train.steps=15", *STEPS]) == 0
    assert json.loads((out / "final.json").read_text())["step"] == 15
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "weights.pt").write_text("not a run")
    assert main(["train", MLP, "--out", str(bare), "--resume"]) == 2
    assert "has no run.json" in one_error_line(capsys)


def test_launch_claims_one_folder_for_all_ranks_before_the_runner(tmp_path, monkeypatch, capsys):
    import subprocess as sp

    calls = []
    monkeypatch.setattr(sp, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["launch", MLP, "--num-accelerators", "2"]) == 0
    cmd = calls[0]
    assert cmd[cmd.index("--out") + 1] == "runs/digits_mlp/version_0"
    assert (tmp_path / "runs/digits_mlp/version_0").is_dir()
    assert main(["launch", MLP, "--dry-run"]) == 0  # claims nothing
    assert not (tmp_path / "runs/digits_mlp/version_1").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "final.json").write_text("{}")
    capsys.readouterr()
    assert main(["launch", MLP, "--out", str(busy)]) == 2  # refused before the runner starts
    one_error_line(capsys)
    assert len(calls) == 1


@pytest.mark.slow
def test_the_runner_without_out_trains_every_rank_into_one_new_folder(tmp_path):
    """`deepspeed ... nnspec train SPEC` without --out: rank 0 claims runs/<model>/version_N and
    tells the other rank, so both train into one folder."""
    pytest.importorskip("deepspeed")
    from .test_distributed import assert_clean_exit, free_port

    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "deepspeed"), "--num_accelerators", "2", "--master_port",
           str(free_port()), "--no_python", "--no_local_rank", str(bin_dir / "nnspec"), "train",
           MLP, "--no-progress", "--set", "train.steps=4", "--set", "train.schedule=constant",
           "--set", "train.checkpoint_every=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert_clean_exit(proc)
    folders = list((tmp_path / "runs" / "digits_mlp").iterdir())
    assert [p.name for p in folders] == ["version_0"]
    assert json.loads((folders[0] / "final.json").read_text())["step"] == 4
    assert (folders[0] / "checkpoints" / "step-00000004").is_dir()
