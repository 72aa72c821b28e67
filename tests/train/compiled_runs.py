"""tests/train/several_runs.py, also printing on every rank how many graphs dynamo compiled in
each run: `graphs NAME RANK N` (compile = true must compile on every rank, not just rank 0).

    deepspeed --num_accelerators 2 --module tests.train.compiled_runs SPEC OUT RUNS.json
"""
from __future__ import annotations

import sys
from pathlib import Path

from torch._dynamo.utils import counters

from nnspec.train import distributed
from tests.train import several_runs


def counted(run):
    def wrapper(spec, train, parallel, out, **kwargs):
        before = counters["stats"]["unique_graphs"]
        final = run(spec, train, parallel, out, **kwargs)
        graphs = counters["stats"]["unique_graphs"] - before
        # one write per line: both ranks print into the runner's one stdout
        sys.stdout.write(f"graphs {Path(out).name} {distributed.rank()} {graphs}\n")
        sys.stdout.flush()
        return final
    return wrapper


if __name__ == "__main__":
    several_runs.run = counted(several_runs.run)
    sys.exit(several_runs.main(sys.argv[1:]))
