"""Several `nnspec.train.run` calls in one launch of the deepspeed runner, one after another.

    deepspeed --num_accelerators 2 --module tests.train.several_runs SPEC OUT RUNS.json

RUNS.json maps a name to [train, parallel] (the JSON of `python -m nnspec.train`), or to
[train, parallel, options] with options {"stop_at": N} (stop there with a checkpoint) or
{"resume": "OTHER"} (continue run OTHER's folder from its latest checkpoint); each run writes
OUT/NAME/ (OUT/OTHER/ when it resumes) and rank 0 prints `NAME {final.json}`, in the file's order. A launch costs two Python and DeepSpeed
start-ups, most of a small run's time, so the tests train several configurations per launch.

The ranks keep one process group for all runs and leave it after the last: DeepSpeed binds its
groups to the first process group, and a second one in the same process is refused ("Group ...
is not registered"). Everything else is what `python -m nnspec.train` does.
"""
from __future__ import annotations

import contextlib
import gc
import json
import sys
from pathlib import Path

import nnspec
from nnspec.train import distributed, run
from nnspec.train.__main__ import sections


@contextlib.contextmanager
def one_process_group():
    """Several runs in one process group, left after the last: run() leaves the group at its
    end, so leaving is put off until the block ends."""
    leave = distributed.shutdown
    distributed.shutdown = gc.collect
    try:
        yield
    finally:
        distributed.shutdown = leave
        leave()


def main(argv: list[str]) -> int:
    spec_path, out, runs = [a for a in argv if not a.startswith("--local_rank")]
    spec = nnspec.load(spec_path)
    with one_process_group():
        for name, (train, parallel, *options) in json.loads(Path(runs).read_text()).items():
            options = options[0] if options else {}
            final = run(spec, *sections(json.dumps(train), json.dumps(parallel)),
                        Path(out) / options.get("resume", name), progress=False,
                        resume="resume" in options, stop_at=options.get("stop_at"))
            if distributed.rank() == 0:
                print(name, json.dumps(final, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
