"""How long a user waits for `nnspec check`, as a ratio against `python -c "import torch"`
measured in the same run.

Each command runs in a fresh interpreter (what a shell or an editor does), best of N runs, with
this checkout first on the path and bytecode caches written and used (as pip's install leaves
them; PYTHONDONTWRITEBYTECODE is dropped), after one untimed run of each. Target: ratio <= 0.25
in wall time (checking needs no torch; tests/test_torch_free.py asserts that it imports none,
this bench says what that buys). The CPU-time ratio is printed too: on a shared machine it is
the steadier of the two.

Run: .venv/bin/python bench/bench_cli.py [--runs 3] [--spec specs/resnet50.nn]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.25

# the console script's body: `nnspec ARGS` without depending on which nnspec the PATH holds
NNSPEC = "import sys; from nnspec.cli import main; sys.exit(main())"


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of `argv`, which must succeed. The CPU time (user + sys of
    the child) hardly moves with the machine's load; the wall time is what a user waits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each command; the best "
                        "counts (default: %(default)s)")
    parser.add_argument("--spec", default="specs/resnet50.nn", help="the spec to check")
    args = parser.parse_args()
    commands = ([sys.executable, "-c", NNSPEC, "check", args.spec],
                [sys.executable, "-c", "import torch"])
    for argv in commands:
        timed(argv)  # warm-up: the file cache, and bytecode for a fresh checkout
    # alternate the two commands so a change in machine load hits both alike
    check, torch = [], []
    for _ in range(args.runs):
        check.append(timed(commands[0]))
        torch.append(timed(commands[1]))
    for what, i in (("wall", 0), ("cpu", 1)):
        ours, ref = min(t[i] for t in check), min(t[i] for t in torch)
        ratio = ours / ref
        print(f"{what}: nnspec check {args.spec} {ours:.2f} s, python -c \"import torch\" "
              f"{ref:.2f} s (best of {args.runs}): ratio {ratio:.3f} (target <= {TARGET}: "
              f"{'ok' if ratio <= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
