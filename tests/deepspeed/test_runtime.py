"""Emitted configs train under DeepSpeed: world-size-1 cases in one process, and multi-process
cases through launch.sh and DeepSpeed's runner (2 processes, CPU accelerator), with a stand-in
`nnspec` on PATH that trains the named cases (tests/deepspeed/ds_worker.py)."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.lang.config import check_parallel
from nnspec.emit.launch import launch_script

from .cases import CASES
from .ds_worker import _free_port as free_port

import deepspeed  # noqa: E402,F401  (a dependency of nnspec: never skipped)
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cpu_runnable(name: str, world_size: int) -> bool:
    c = CASES[name]
    p = c.parallel
    return (p.precision != "fp16"                       # refused by the CPU accelerator
            and "nvme" not in (p.offload_optimizer, p.offload_param)   # needs the aio op built
            # DeepSpeedCPUAdagrad is a C++ op built at first use (a minute or more)
            and not (c.train.optimizer.name == "adagrad" and p.offload_optimizer != "none")
            and p.pipeline_stages <= world_size
            and not any(q.severity == "error" for q in check_parallel(c.train, p, world_size)))


def check_output(r: subprocess.CompletedProcess, names: list[str], procs: int = 1):
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for name in names:
        # ranks share one pipe, so a report may be glued to another rank's line: count reports
        # anywhere in the output, not whole lines
        reports = len(re.findall(rf"{re.escape(name)} ok ", r.stdout))
        assert reports == procs, (name, reports, out[-4000:])


def test_single_process_cases():
    names = [n for n in sorted(CASES) if cpu_runnable(n, 1)]
    assert len(names) >= 15
    r = subprocess.run([sys.executable, "-m", "tests.deepspeed.ds_worker", *names], cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                       timeout=600)
    check_output(r, names)


def _fake_nnspec(tmp_path: Path) -> dict:
    fake = tmp_path / "bin" / "nnspec"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from tests.deepspeed.ds_worker import exit_now, main\n"
                    "exit_now(main(sys.argv[1:]))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # one thread per rank: two ranks on two cores, without OpenMP spinning against each other
    env = dict(os.environ, PATH=f"{fake.parent}:{BIN}:{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_two_processes_through_launch_script(tmp_path):
    # pipeline cases last: after a PipelineEngine, DeepSpeed's global state breaks later engines
    # of other kinds in the same process
    names = ["zero2_micro_derives_accum_ws2", "zero3_offload_cpu_ws2", "comm_fp16_ws2",
             "schedule_one_cycle_sgd_ws2", "checkpointing_zero1_ws2", "pipeline2_ws2",
             "pipeline2_dp2_checkpointing_ws4"]
    assert all(cpu_runnable(n, 2) for n in names)
    script = tmp_path / "launch.sh"
    script.write_text(launch_script(names[0], names[1:], 2, None, None, master_port=free_port()))
    r = subprocess.run(["bash", str(script)], cwd=ROOT, env=_fake_nnspec(tmp_path),
                       capture_output=True, text=True, timeout=600)
    check_output(r, names, procs=2)


def test_localhost_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    script = tmp_path / "launch.sh"
    script.write_text(launch_script("zero1_sgd_ws2", [], None, None, str(hostfile),
                                    master_port=free_port()))
    r = subprocess.run(["bash", str(script)], cwd=ROOT, env=_fake_nnspec(tmp_path),
                       capture_output=True, text=True, timeout=600)
    check_output(r, ["zero1_sgd_ws2"], procs=2)
