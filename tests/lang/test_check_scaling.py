"""Checking grows linearly with the size of a spec (issue 12): the time of `nnspec.loads` and the
summary (what `nnspec check` does) on a spec 16x larger is at most BOUND times that on the small one. Linear growth gives 16x or less (fixed
costs weigh more in the small spec); the quadratic growth this guards against gave about 250x.

Timings are CPU time of this process (other processes on a shared machine inflate wall time, not
this), the minimum of a few runs. The specs are bench/bench_check.py's, which prints the figures.
"""
from __future__ import annotations

import gc
import importlib.util
import time
from pathlib import Path

import pytest

import nnspec
from nnspec.lang.diagnostics import SpecError

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_check", ROOT / "bench" / "bench_check.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

BOUND = 40  # for 16x the input: linear is <= 16, quadratic about 256


def _cpu_seconds(text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        nnspec.loads(text, name="scaling.nn").summary()  # what `nnspec check` does
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("shape,small", [("instances", 25), ("definitions", 25), ("repeats", 25),
                                         ("flat", 500)])
def test_checking_grows_linearly(shape, small):
    make = bench.SHAPES[shape]
    nnspec.loads(make(2), name="warm.nn")  # imports and the grammar, once
    t_small = _cpu_seconds(make(small))
    t_large = _cpu_seconds(make(small * 16))
    ratio = t_large / max(t_small, 1e-4)
    assert ratio <= BOUND, (f"{shape}: {small} -> {small * 16} took {t_small:.4f} s -> "
                            f"{t_large:.4f} s ({ratio:.0f}x for 16x the input)")


def test_the_garbage_collector_is_back_on_after_a_check():
    """Parsing and checking pause automatic collection (nnspec.lang.gc_pause); it must be on
    again afterwards, after a refused spec too, and stay off for a caller that turned it off."""
    assert gc.isenabled()
    nnspec.loads(bench.instances(3), name="ok.nn")
    assert gc.isenabled()
    for bad in ("model m { input x: float[4]\n  linear(0) }", "model m { x -> }"):
        with pytest.raises(SpecError):
            nnspec.loads(bad, name="bad.nn")
        assert gc.isenabled()
    gc.disable()
    try:
        nnspec.loads(bench.instances(3), name="ok.nn")
        assert not gc.isenabled()
    finally:
        gc.enable()
