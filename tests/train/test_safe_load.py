"""Crafted checkpoints run no code (issue 9, defect 5).

A crafted file is a real checkpoint file with one more entry whose unpickling creates a canary
file (what `os.system` or any other payload would do), saved where the real file was, with the
folder's marker updated as an attacker would. Every loader is given one: the one-process resume
and export, the DeepSpeed folder export (ZeRO 0, and every model and optimizer file that
`zero_to_fp32` opens under ZeRO 1-3), pipeline layer files, resume under DeepSpeed, and
`compress --weights`. Each must refuse it naming the file (exit 2 from the CLI), write nothing,
and leave no canary. Real checkpoints of every kind still pass the check and export.

The DeepSpeed checkpoints are made by one process (tests/train/deepspeed_kinds.py), and the
DeepSpeed resume is one more process with world size 1: the guarded code is the same on every
rank, and no launch of the runner is needed.
"""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main
from nnspec.train import run
from nnspec.train.checkpoint import MARKER, LocalCheckpoints, manifest
from nnspec.train.safeload import (DEEPSPEED_TYPES, UnsafeCheckpoint, safe_load, verify,
                                   verify_folder)

from .conftest import ROOT, sections, subprocess_env
from .test_distributed import free_port

pytest.importorskip("deepspeed")
STEP = "step-00000002"


class Touch:
    """Unpickled (weights_only=False), it creates `canary`: a crafted checkpoint's payload."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.canary),)


class System:
    """The same through a shell command, as a real attack would do it."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.canary))}",)


def craft(path: Path, canary: Path, payload=Touch, base: Path | None = None) -> Path:
    """Replace `path` with its own contents (or `base`'s) plus a payload entry, and update the
    sizes in its folder's marker, so that only the contents can give it away."""
    content = safe_load(base or path)
    content = dict(content, payload=payload(canary))
    torch.save(content, path)
    marker = path.parent / MARKER
    if marker.is_file():
        data = json.loads(marker.read_text())
        data["files"] = manifest(path.parent)
        marker.write_text(json.dumps(data))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ---- checkpoints to craft from -------------------------------------------------------------------

@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> Path:
    """OUT/NAME/checkpoints/step-00000002/ for every DeepSpeed kind, and OUT/pipeline/t/."""
    out = tmp_path_factory.mktemp("kinds")
    env = dict(subprocess_env(), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    r = subprocess.run([sys.executable, "-m", "tests.train.deepspeed_kinds", str(out)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """A one-process digits_mlp run with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("local")
    train, parallel = sections(steps=4, batch_size=32, checkpoint_every=2, eval_every=2,
                               optimizer=("adamw", {"lr": 1e-2}))
    run(nnspec.load(ROOT / "specs/digits_mlp.nn"), train, parallel, out, progress=False)
    return out


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, file: Path, canary: Path) -> None:
    assert code == 2, err
    assert f"refusing to load {file}" in err and err.startswith("error: "), err
    assert "Traceback" not in err
    assert not canary.exists()


# ---- the check itself ----------------------------------------------------------------------------

def test_the_payload_runs_code_when_unpickled_as_deepspeed_does(tmp_path):
    """What the other tests guard against: the crafted file, loaded as DeepSpeed and the old
    export loaded it, runs its payload."""
    for payload in (Touch, System):
        canary = tmp_path / f"canary-{payload.__name__}"
        torch.save({"w": torch.zeros(2), "payload": payload(canary)}, tmp_path / "c.pt")
        torch.load(tmp_path / "c.pt", weights_only=False)
        assert canary.exists()


@pytest.mark.parametrize("form", ["zip", "legacy", "bare pickle"])
@pytest.mark.parametrize("payload", [Touch, System])
def test_safe_load_refuses_a_crafted_file_of_any_form(tmp_path, form, payload):
    canary, path = tmp_path / "canary", tmp_path / "crafted.pt"
    content = {"w": torch.zeros(2), "payload": payload(canary)}
    if form == "bare pickle":
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path, _use_new_zipfile_serialization=form == "zip")
    for check in (safe_load, verify):
        with pytest.raises(UnsafeCheckpoint) as err:
            check(path)
        assert str(path) in err.value.message and "could run code" in err.value.message
    if form != "bare pickle":  # the refused name, as torch's unpickler reports it
        assert ("posix.system" if payload is System else "pathlib") in err.value.message
    assert not canary.exists()


def test_a_crafted_entry_beside_deepspeed_types_is_refused(kinds, tmp_path):
    """The allowed DeepSpeed classes do not open the door to anything else in the same file."""
    real = kinds / "zero3" / "checkpoints" / STEP / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    path = shutil.copy(real, tmp_path / real.name)
    craft(Path(path), tmp_path / "canary")
    with pytest.raises(UnsafeCheckpoint):
        verify(path)
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("content", [b"", b"torn", b"not a checkpoint"])
def test_torn_and_junk_files_are_damaged_not_unsafe(tmp_path, content):
    """Those are reported as damaged by each caller, as before (and older ones tried)."""
    path = tmp_path / "step.pt"
    path.write_bytes(content)
    with pytest.raises(Exception) as err:
        safe_load(path)
    assert not isinstance(err.value, UnsafeCheckpoint)
    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.zeros(100)}, whole)
    path.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(Exception) as err:
        safe_load(path)
    assert not isinstance(err.value, UnsafeCheckpoint)


def test_a_fifo_is_refused_without_reading_it(tmp_path):
    """A FIFO among checkpoint files would hang the reader (DeepSpeed's too)."""
    fifo = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    os.mkfifo(fifo)
    local = tmp_path / "checkpoints"
    local.mkdir()
    os.mkfifo(local / "step-00000009.pt")
    checks = [lambda: verify_folder(tmp_path), lambda: safe_load(fifo),
              lambda: LocalCheckpoints(local, 3).load_latest()]
    errors: list = []

    def each():
        for check in checks:
            with pytest.raises(UnsafeCheckpoint) as err:
                check()
            errors.append(err.value.message)
    t = threading.Thread(target=each, daemon=True)
    t.start()
    t.join(20)
    for path in (fifo, local / "step-00000009.pt"):  # unblock a reader before failing
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader on it: nothing to unblock
            pass
    assert len(errors) == len(checks), "a check opened the FIFO"
    assert all("not a regular file" in e for e in errors)


@pytest.mark.parametrize("kind", ["zero0", "zero0-bf16", "zero1-bf16", "zero2-offload", "zero3",
                                  "zero3-bf16-offload", "pipeline"])
def test_every_file_of_real_deepspeed_checkpoints_passes(kinds, kind):
    """The allow-list is what DeepSpeed's checkpoints need: each file of each kind loads with
    the weights-only unpickler, and names no class outside DEEPSPEED_TYPES."""
    folder = kinds / kind / "t" if kind == "pipeline" else kinds / kind / "checkpoints" / STEP
    files = sorted(folder.glob("*.pt"))
    assert files
    verify_folder(folder)
    for path in files:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        assert names <= set(DEEPSPEED_TYPES), (path.name, names)


@pytest.mark.parametrize("kind", ["zero0", "zero0-bf16", "zero1-bf16", "zero2-offload", "zero3",
                                  "zero3-bf16-offload"])
def test_real_deepspeed_checkpoints_still_export(kinds, tmp_path, capsys, kind):
    target = tmp_path / "m.safetensors"
    code, out, err = cli(capsys, "export-weights", kinds / kind / "checkpoints", "-o", target,
                         "--spec", ROOT / "specs/digits_mlp.nn")
    assert code == 0, err
    gathered = load_file(kinds / kind / "model.safetensors")  # the run's own end weights
    exported = load_file(target)
    assert exported.keys() == gathered.keys()
    # bf16 runs export their fp32 master weights, which round to the module's bf16 ones
    same = (lambda t: t.bfloat16()) if "bf16" in kind else (lambda t: t)
    assert all(torch.equal(same(exported[k]), same(gathered[k])) for k in gathered)


# ---- one crafted file per loader -----------------------------------------------------------------

DEEPSPEED_FILES = [
    ("zero0", "mp_rank_00_model_states.pt"),
    ("zero0-bf16", "mp_rank_00_model_states.pt"),
    ("zero1-bf16", "mp_rank_00_model_states.pt"),
    ("zero1-bf16", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"),
    ("zero2-offload", "mp_rank_00_model_states.pt"),
    ("zero2-offload", "zero_pp_rank_0_mp_rank_00_optim_states.pt"),
    ("zero3", "zero_pp_rank_0_mp_rank_00_model_states.pt"),
    ("zero3", "zero_pp_rank_0_mp_rank_00_optim_states.pt"),
    ("zero3-bf16-offload", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"),
]


@pytest.mark.parametrize("kind,name", DEEPSPEED_FILES)
def test_export_of_a_deepspeed_folder_refuses_a_crafted_file(kinds, tmp_path, capsys, kind,
                                                             name):
    """ZeRO 0 (our own load of the module file) and ZeRO 1-3 (zero_to_fp32, which unpickles
    every model and optimizer file), named as the folder or as the run's checkpoints/."""
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(kinds / kind / "checkpoints", checkpoints)
    crafted = craft(checkpoints / STEP / name, tmp_path / "canary")
    for ckpt in (checkpoints / STEP, checkpoints):
        target = tmp_path / "out" / "m.safetensors"
        code, _, err = cli(capsys, "export-weights", ckpt, "-o", target)
        assert_refused(code, err, crafted, tmp_path / "canary")
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_export_refuses_a_crafted_pipeline_layer_file(kinds, tmp_path, capsys):
    folder = tmp_path / "checkpoints" / STEP
    shutil.copytree(kinds / "zero0" / "checkpoints" / STEP, folder)
    crafted = folder / "layer_00-model_states.pt"
    craft(crafted, tmp_path / "canary", base=kinds / "pipeline" / "t" / crafted.name)
    code, _, err = cli(capsys, "export-weights", folder, "-o", tmp_path / "m.safetensors",
                       "--spec", ROOT / "specs/tiny_gpt_pipe.nn")
    assert_refused(code, err, crafted, tmp_path / "canary")
    assert not (tmp_path / "m.safetensors").exists()


def test_export_of_a_one_process_checkpoint_refuses_a_crafted_file(local_run, tmp_path, capsys):
    """The file itself, and its run folder: the crafted newest one is refused, not passed over
    for the older one."""
    run_dir = tmp_path / "run"
    shutil.copytree(local_run, run_dir)
    crafted = craft(run_dir / "checkpoints" / "step-00000004.pt", tmp_path / "canary", System)
    for ckpt in (crafted, run_dir):
        code, _, err = cli(capsys, "export-weights", ckpt, "-o", tmp_path / "m.safetensors")
        assert_refused(code, err, crafted, tmp_path / "canary")
        assert not (tmp_path / "m.safetensors").exists()


def test_one_process_resume_refuses_a_crafted_checkpoint(local_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(local_run, run_dir)
    for name in ("final.json", "model.safetensors"):
        (run_dir / name).unlink()
    crafted = craft(run_dir / "checkpoints" / "step-00000004.pt", tmp_path / "canary")
    before = snapshot(run_dir / "checkpoints")
    with pytest.raises(UnsafeCheckpoint):
        LocalCheckpoints(run_dir / "checkpoints", 3).load_latest()
    code, _, err = cli(capsys, "train", ROOT / "specs/digits_mlp.nn", "--out", run_dir,
                       "--resume", "--no-progress", "--set", "train.steps=40",
                       "--set", "train.checkpoint_every=2", "--set", "train.batch_size=32")
    assert_refused(code, err, crafted, tmp_path / "canary")
    assert not (run_dir / "final.json").exists() and not (run_dir / "model.safetensors").exists()
    assert snapshot(run_dir / "checkpoints") == before


def test_resume_under_deepspeed_refuses_a_crafted_shard(kinds, tmp_path):
    """`python -m nnspec.train --resume` as the runner starts it on each rank (here one rank):
    the optimizer shard that engine.load_checkpoint would unpickle is refused first."""
    out = tmp_path / "run"
    shutil.copytree(kinds / "zero2-offload", out)
    for name in ("final.json", "model.safetensors"):
        (out / name).unlink()
    crafted = craft(out / "checkpoints" / STEP / "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                    tmp_path / "canary", System)
    before = snapshot(out / "checkpoints")
    from .deepspeed_kinds import KINDS, TRAIN
    env = dict(subprocess_env(), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    r = subprocess.run([sys.executable, "-m", "nnspec.train", "specs/digits_mlp.nn", "--out",
                        str(out), "--resume", "--no-progress",
                        "--train-json", json.dumps(dict(TRAIN, steps=4)),
                        "--parallel-json", json.dumps(KINDS["zero2-offload"])],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert_refused(r.returncode, r.stderr[r.stderr.find("error: "):], crafted,
                   tmp_path / "canary")
    assert not (out / "final.json").exists() and not (out / "model.safetensors").exists()
    assert snapshot(out / "checkpoints") == before


def test_compress_refuses_crafted_weights(local_run, tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save(load_file(local_run / "model.safetensors"), weights)
    craft(weights, tmp_path / "canary", System)
    code, _, err = cli(capsys, "compress", ROOT / "specs/digits_pruned.nn", "--weights", weights,
                       "-o", tmp_path / "out")
    assert_refused(code, err, weights, tmp_path / "canary")
    assert not (tmp_path / "out").exists()


def test_compress_still_loads_real_pt_weights(local_run, tmp_path):
    from nnspec.compress.errors import load_weights
    weights = tmp_path / "weights.pt"
    saved = load_file(local_run / "model.safetensors")
    torch.save(saved, weights)
    model = nnspec.load(ROOT / "specs/digits_mlp.nn").build()
    load_weights(model, weights)
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)
