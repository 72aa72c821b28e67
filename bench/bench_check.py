"""How checking a spec grows with its size: parse, and the whole check (`nnspec.load` up to the
checked IR; nothing is built or emitted).

Issue 12 asks: checking grows linearly, 10 -> 1,000 blocks at most 120x, 1,000 blocks under 1 s,
and a flat 20,000-layer spec under 5 s.

What "N blocks" means here. The issue's figures (1.6 s at 1,000 blocks, 229x from 10) were
measured with bench/bench_core.py's generated model: N block *instances*, each with its own
arguments, so each is elaborated anew and the checker's cache of identical instantiations never
hits. That is the `instances` shape below and the one the targets are judged on. Two more shapes
show the other ways a spec grows:

- `instances`: two block definitions, a model of N applications of them with N different
  argument sets (bench_core.py's spec);
- `definitions`: N block definitions, each used once (a long file of small blocks);
- `repeats`: one block, applied N times with the same arguments (the instantiation cache hits);
- `flat`: one model of N layer lines and no blocks (the flat 20,000-layer spec of the issue).

The targets are judged on `check` (the checked IR); `+summary` adds what `nnspec check` prints
(lowering, the partition into units, parameter and FLOP totals). Wall time; each figure is the
minimum of a few runs (the machine is shared). Run:
    PYTHONPATH=. python bench/bench_check.py [--quick] [--cpu]
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
from nnspec.lang.parse import parse  # noqa: E402

BLOCKS = """
block Residual(width, expand = 4) {
  in x
  h = x -> norm: layernorm -> fc1: linear(width * expand) -> act: gelu -> fc2: linear(width)
  out h + x
}

block Project(width) {
  in x
  out x -> proj: linear(width) -> norm: layernorm -> act: relu
}
"""


def instances(n: int) -> str:
    """N block instances, every one with its own arguments (bench_core.py's generated spec)."""
    uses = []
    for i in range(n):
        if i % 2 == 0:
            uses.append(f"  p{i}: Project({16 + i})")
        else:
            uses.append(f"  r{i}: Residual({15 + i}, expand={1 + i % 4})")
    return f"{BLOCKS}\nmodel deep {{\n  input x: float[16, 32]\n" + "\n".join(uses) + "\n}\n"


def definitions(n: int) -> str:
    """N block definitions, each used once."""
    blocks = [f"block B{i}(width) {{\n  in x\n  h = x -> fc: linear(width) -> act: relu\n"
              f"  out h -> norm: layernorm\n}}\n" for i in range(n)]
    uses = [f"  b{i}: B{i}({16 + i % 7})" for i in range(n)]
    return "\n".join(blocks) + "\nmodel many {\n  input x: float[16, 32]\n" + "\n".join(uses) + "\n}\n"


def repeats(n: int) -> str:
    """One block applied N times with the same arguments."""
    uses = [f"  r{i}: Residual(32, expand=2)" for i in range(n)]
    return f"{BLOCKS}\nmodel same {{\n  input x: float[16, 32]\n" + "\n".join(uses) + "\n}\n"


def flat(n: int) -> str:
    """One model of N layer lines, no blocks."""
    lines = []
    for i in range(n):
        lines.append(f"  fc{i}: linear({16 + i % 5})" if i % 2 == 0 else "  relu")
    return "model flat {\n  input x: float[4, 16]\n" + "\n".join(lines) + "\n}\n"


SHAPES = {"instances": instances, "definitions": definitions, "repeats": repeats, "flat": flat}


CLOCK = time.perf_counter  # --cpu: time.process_time, this process's CPU time


def timed(fn, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def measure(shape: str, n: int, runs: int) -> tuple[float, float, float]:
    """Seconds to parse; to check (nnspec.loads: parse, resolve, check, up to the checked IR);
    and to check and summarize, which is what `nnspec check` does after its imports."""
    text = SHAPES[shape](n)
    name = f"{shape}{n}.nn"
    t_parse = timed(lambda: parse(text, name), runs)
    t_check = timed(lambda: nnspec.loads(text, name=name), runs)
    t_summary = timed(lambda: nnspec.loads(text, name=name).summary(), runs)
    return t_parse, t_check, t_summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run per figure, smaller flat spec")
    ap.add_argument("--cpu", action="store_true", help="CPU time of this process instead of "
                    "wall time (steadier on a machine shared with other work)")
    args = ap.parse_args()
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    print(f"{'CPU' if args.cpu else 'wall'} time, seconds")
    runs = 1 if args.quick else 3
    nnspec.loads(instances(2))  # warm-up: grammar construction, imports
    print(f"{'spec':26} {'parse s':>9} {'check s':>9} {'check ms/unit':>14} {'+summary s':>11}")
    results: dict[str, dict[int, float]] = {}
    summaries: dict[str, dict[int, float]] = {}
    plan = [("instances", (10, 100, 1000)), ("definitions", (10, 100, 1000)),
            ("repeats", (10, 100, 1000)), ("flat", (200, 2000, 5000 if args.quick else 20000))]
    for shape, sizes in plan:
        for n in sizes:
            t_parse, t_check, t_summary = measure(shape, n, runs if n <= 2000 else 1)
            results.setdefault(shape, {})[n] = t_check
            summaries.setdefault(shape, {})[n] = t_summary
            print(f"{f'{shape} {n:,}':26} {t_parse:9.3f} {t_check:9.3f} {t_check / n * 1e3:14.3f} "
                  f"{t_summary:11.3f}")
    print()
    for what, table in (("check", results), ("check+summary", summaries)):
        for shape in ("instances", "definitions", "repeats"):
            r = table[shape]
            print(f"{what} {shape}: 10 -> 1,000 grows {r[1000] / r[10]:.0f}x (target <= 120x); "
                  f"1,000 in {r[1000]:.3f} s (target < 1 s)")
        r = table["flat"]
        big = max(r)
        print(f"{what} flat: 200 -> 2,000 grows {r[2000] / r[200]:.1f}x (linear: 10x); {big:,} "
              f"layers in {r[big]:.3f} s" + (" (target < 5 s)" if big == 20000 else ""))


if __name__ == "__main__":
    main()
