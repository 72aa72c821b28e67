"""bench/bench_gpu_throughput.py stays runnable where there is no GPU: its CPU smoke mode (a
2-layer gpt2_small, two timed steps) runs all four loops, compiled ones included, and prints and
writes the figures; asked for the GPU where there is none, it stops with exit 2 and says why.
The figures themselves are a GPU measurement (see the README's benchmarks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_gpu_throughput.py"
NAMES = ("nnspec train", "hand-written", "nnspec train compile", "hand-written compile")


def bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cpu_smoke_run_prints_four_figures_and_the_ratios(tmp_path):
    r = bench("--device", "cpu", "--steps", "2", "--warmup", "1", "--tiny",
              "--json", str(tmp_path / "figures.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    for name in NAMES:
        assert any(line.startswith(name + " ") and line.endswith("tokens/s") for line in lines), \
            r.stdout
    assert any(line.startswith("nnspec/hand: eager ") for line in lines), r.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures["tokens_per_s"]) == set(NAMES)
    assert all(v > 0 for v in figures["tokens_per_s"].values())
    assert figures["ratio"]["eager"] == figures["tokens_per_s"]["nnspec train"] / \
        figures["tokens_per_s"]["hand-written"]
    assert figures["device"] == "cpu" and figures["mfu"] is None
    assert figures["parameters"] == 2 * (12 * 64 * 64 + 13 * 64) + 256 * 64 + 64 * 64 + 2 * 64


def test_without_cuda_it_stops_with_a_message():
    r = bench("--steps", "2")
    assert r.returncode == 2
    assert "bench_gpu_throughput: error: no CUDA device" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_bad_counts_are_usage_errors():
    r = bench("--device", "cpu", "--steps", "0")
    assert r.returncode == 2 and "--steps must be at least 1" in r.stderr


def test_settings_the_model_refuses_are_its_diagnostic():
    r = bench("--device", "cpu", "--tiny", "--seq", "100", "--steps", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "does not take these settings" in r.stderr and "error[E0401]" in r.stderr
