#!/usr/bin/env python3
"""Run the mutation fuzzer at any size: `nnspec check` (and `compile -o` for every 5th case) on
mutants of the shipped specs, then on every hostile include path and spec path.

    python scripts/fuzz.py --count 10000 [--seed S] [--out DIR] [--no-files]
    python scripts/fuzz.py --seed 9 --only 123 --only 456 --out DIR   # particular mutants again

It prints how many cases ran and how many gave a traceback, a hang, a slow run (over 2 s) or
another broken contract (a bad exit code, unrendered diagnostics, files left behind, a
non-spec file quoted), then one line per distinct traceback. Each failing input is saved as
DIR/NAME.nn with DIR/NAME.txt saying what went wrong (default DIR: fuzz-failures/). Exit status:
0 when every case passed, 1 otherwise.

The mutants are a pure function of (seed, number), so a run is repeatable and a failure is
reproduced with --only. The cases run in a worker process that a watchdog restarts past any
case that stops answering (a read that ignores signals, a crash of the interpreter): such a case
counts as a hang. Run it from the repository root; it needs nnspec and its test dependencies
importable (the test venv). 10,000 mutants take about 10 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fuzz.engine import (fifo_safe_remove, make_tree, run_file_case, run_mutant,  # noqa: E402
                               warm_up)
from tests.fuzz.hostile import FILE_CASES  # noqa: E402
from tests.fuzz.mutate import mutant  # noqa: E402
from tests.fuzz.runner import WAIT_SECONDS  # noqa: E402

WATCHDOG_SECONDS = 2 * WAIT_SECONDS + 60  # a slow case is run twice before it is judged
KINDS = ["traceback", "hang", "slow", "exit", "output", "written", "leak"]


def work_items(args) -> list[list]:
    """What the run does, in order: ["m", number] per mutant, ["f", case index, command]."""
    numbers = args.only or range(args.start, args.start + args.count)
    items = [["m", n] for n in numbers]
    if not args.only and not args.no_files:
        items += [["f", i, cmd] for i in range(len(FILE_CASES)) for cmd in ("check", "compile")]
    return items


# ---- worker: runs items from a position, one JSON line per item ---------------------------
def worker(args) -> None:
    items = work_items(args)
    tmp = Path(tempfile.mkdtemp(prefix="nnspec-fuzz-"))
    tree = make_tree(tmp / "tree")
    warm_up(tree)
    try:
        for position in range(args.position, len(items)):
            print(json.dumps({"start": position}), flush=True)
            result = run_item(items[position], tree, tmp)
            print(json.dumps(result | {"position": position}), flush=True)
            if {"hang", "traceback"} & set(result["kinds"]):
                # a case stopped mid-way may have left a module half-imported: start afresh
                print(json.dumps({"restart": position + 1}), flush=True)
                return
    finally:
        fifo_safe_remove(tmp)


def run_item(item: list, tree: Path, tmp: Path) -> dict:
    if item[0] == "m":
        outcomes = run_mutant(tree, mutant(ARGS.seed, item[1]))
    else:
        folder = tmp / f"file-{item[1]}-{item[2]}"
        folder.mkdir()
        try:
            outcomes = [run_file_case(folder, FILE_CASES[item[1]], compile=item[2] == "compile")]
        finally:
            fifo_safe_remove(folder)
    bad = [o for o in outcomes if o.problems]
    return {"kinds": sorted({o.kind for o in bad}), "report": "\n\n".join(o.report() for o in bad),
            "first": [o.problems[0] for o in bad]}


# ---- parent: the watchdog and the tally ---------------------------------------------------
def run(args) -> int:
    items = work_items(args)
    out = Path(args.out)
    tally, tracebacks, position = Counter(), Counter(), 0
    started = time.monotonic()
    while position < len(items):
        position = watch_worker(args, items, position, tally, tracebacks, out)
    print(f"ran {len(items)} cases ({sum(1 for i in items if i[0] == 'm')} mutants, seed "
          f"{args.seed}) in {time.monotonic() - started:.0f} s")
    print("  " + ", ".join(f"{k}: {tally[k]}" for k in KINDS))
    for text, n in tracebacks.most_common():
        print(f"  {n} x {text}")
    failed = sum(tally.values())
    if failed:
        print(f"failing inputs saved under {out}/")
    return 1 if failed else 0


def watch_worker(args, items, position, tally, tracebacks, out: Path) -> int:
    """Run a worker from `position`; return where the next one starts (past a stuck case)."""
    cmd = [sys.executable, __file__, "--worker", "--position", str(position),
           "--seed", str(args.seed), "--count", str(args.count), "--start", str(args.start)]
    cmd += ["--no-files"] * args.no_files + [f"--only={n}" for n in args.only]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=REPO, env=os.environ | {"OMP_NUM_THREADS": "1"})
    current = position
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], WATCHDOG_SECONDS)
            if not ready:
                record(items[current], {"kinds": ["hang"], "report": "the worker stopped "
                       f"answering for {WATCHDOG_SECONDS:.0f} s and was killed", "first": []},
                       args, tally, tracebacks, out)
                return current + 1
            line = proc.stdout.readline()
            if not line:
                if current < len(items) and proc.wait() != 0:
                    record(items[current], {"kinds": ["traceback"], "report": "the worker died "
                           f"with exit status {proc.returncode}", "first": ["traceback: worker "
                           f"died ({proc.returncode})"]}, args, tally, tracebacks, out)
                    return current + 1
                return len(items)
            message = json.loads(line)
            if "restart" in message:
                return message["restart"]
            if "start" in message:
                current = message["start"]
            else:
                record(items[current], message, args, tally, tracebacks, out)
                current += 1
                if current % 500 == 0:
                    print(f"  ... {current}/{len(items)}", file=sys.stderr, flush=True)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def record(item: list, result: dict, args, tally: Counter, tracebacks: Counter, out: Path):
    if not result["kinds"]:
        return
    for kind in result["kinds"]:
        tally[kind] += 1
    for first in result["first"]:
        if first.startswith("traceback:"):
            tracebacks[summarize_traceback(first)] += 1
    if item[0] == "m":
        m = mutant(args.seed, item[1])
        name, data = f"{m.name}-{'-'.join(result['kinds'])}", m.data
        header = f"mutant {m.number} of seed {args.seed}, from {m.origin}\n\n"
    else:
        case = FILE_CASES[item[1]]
        name, data = f"file-{case.name}-{item[2]}", b""
        header = f"hostile file case {case.name} ({item[2]}): see tests/fuzz/hostile.py\n\n"
    out.mkdir(parents=True, exist_ok=True)
    if data:
        (out / f"{name}.nn").write_bytes(data)
    (out / f"{name}.txt").write_text(header + result["report"], encoding="utf-8")


def summarize_traceback(first: str) -> str:
    """`ExcType: message` plus the innermost nnspec frame, to group repeats of one bug."""
    head = first.splitlines()[0][len("traceback: "):]
    frames = re.findall(r'File "[^"]*/(nnspec/[^"]+)", line (\d+), in (\w+)', first)
    where = f" at {frames[-1][0]}:{frames[-1][1]} ({frames[-1][2]})" if frames else ""
    head = re.sub(r"'/[^']*'?|`/[^`]*`?", "PATH", head)  # one bug, whatever file it was in
    return re.sub(r"\d{3,}", "N", head)[:100] + where


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="mutants to run")
    parser.add_argument("--seed", type=int, default=0, help="which mutants (default 0)")
    parser.add_argument("--start", type=int, default=0, help="number of the first mutant")
    parser.add_argument("--only", type=int, action="append", default=[],
                        help="run just this mutant number (repeatable)")
    parser.add_argument("--out", default="fuzz-failures", help="where failing inputs go")
    parser.add_argument("--no-files", action="store_true", help="skip the hostile file cases")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--position", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.worker:
        worker(ARGS)
    else:
        sys.exit(run(ARGS))
