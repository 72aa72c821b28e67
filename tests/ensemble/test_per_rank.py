"""placement = per_rank under the real deepspeed runner (2 ranks, CPU, gloo): rank i trains
member i alone and rank 0 gathers the members into the one module and the report. Same seeds,
same members: the module equals the one a sequential run in this process writes. One launch."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nnspec.cli import main

from .conftest import ROOT, tiny_spec

pytest.importorskip("deepspeed")
DEEPSPEED = Path(sys.executable).parent / "deepspeed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_per_rank_members_equal_the_sequential_ones(tmp_path):
    import os
    path = tiny_spec(tmp_path, members=2, combine="learned")   # auto: per_rank with 2 ranks
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [str(DEEPSPEED), "--num_accelerators", "2", "--master_port", str(free_port()),
           "--no_local_rank", "--module", "nnspec", "train", str(path), "--out",
           str(tmp_path / "ranks"), "--no-progress"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert log.count("exits successfully") == 2, log[-5000:]
    assert "terminate called" not in log and "Traceback" not in log, log[-5000:]
    assert main(["train", str(path), "--out", str(tmp_path / "one"), "--no-progress",
                 "--set", "ensemble.placement=sequential"]) == 0
    ranks, one = (load_file(str(tmp_path / p / "model.safetensors")) for p in ("ranks", "one"))
    assert ranks.keys() == one.keys() and "weights" in ranks
    assert all(torch.equal(ranks[k], one[k]) for k in ranks), \
        max((ranks[k] - one[k]).abs().max().item() for k in ranks)
    rep = [json.loads((tmp_path / p / "report.json").read_text()) for p in ("ranks", "one")]
    assert rep[0] == rep[1]
    for i in (0, 1):   # each rank wrote its member's run
        assert (tmp_path / f"ranks/members/{i}/final.json").is_file()


@pytest.mark.parametrize("placement, processes", [("per_rank", "3"), ("sequential", "1"),
                                                  ("auto", "1")])
def test_launch_starts_one_process_per_member_for_per_rank(tmp_path, capsys, placement,
                                                           processes):
    path = tiny_spec(tmp_path, members=3)
    assert main(["launch", str(path), "--dry-run", "--set",
                 f"ensemble.placement={placement}"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[cmd.index("--num_accelerators") + 1] == processes
