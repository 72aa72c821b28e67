"""Tensor-parallel training runs under the deepspeed runner, several in one launch:

    deepspeed --num_accelerators N --module tests.train.tensor_worker OUT CASES.json

CASES.json maps a name to {"sets": the `--set` values of specs/tiny_gpt_pipe.nn for that case
(its parallel section: tensor, zero, ...), "resume": true or false}. Each case trains with
`nnspec.train.run`, a train row of metrics.csv after every step (LOG_EVERY = 1) so the test can
compare each step's loss: OUT/NAME/full (20 steps, a checkpoint every 10); with "resume" also
OUT/NAME/cut (stopped at step 10, which saves a checkpoint there), then resumed to step 20.
Rank 0 prints `NAME {final.json}` per case. The ranks keep one process group for all runs (several_runs.one_process_group).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nnspec
from nnspec.train import distributed, loop, run

from tests.train.several_runs import one_process_group

SPEC = Path(__file__).resolve().parents[2] / "specs" / "tiny_gpt_pipe.nn"
BASE = {"parallel.pipeline_stages": 1, "train.steps": 20, "train.eval_every": 10,
        "train.checkpoint_every": 10}


def main(argv: list[str]) -> int:
    out, cases = [a for a in argv if not a.startswith("--local_rank")]
    loop.LOG_EVERY = 1
    with one_process_group():
        for name, case in json.loads(Path(cases).read_text()).items():
            sets = {k: tuple(v) if isinstance(v, list) else v for k, v in case["sets"].items()}
            spec = nnspec.load(SPEC, sets={**BASE, **sets})  # JSON has lists, settings tuples
            train, parallel = spec.settings.train, spec.settings.parallel
            final = run(spec, train, parallel, Path(out) / name / "full", progress=False)
            if case["resume"]:
                run(spec, train, parallel, Path(out) / name / "cut", progress=False, stop_at=10)
                run(spec, train, parallel, Path(out) / name / "cut", progress=False, resume=True)
            if distributed.rank() == 0:
                print(name, json.dumps(final, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
