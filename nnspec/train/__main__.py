"""`python -m nnspec.train SPEC --out DIR`: train a spec, in one process or under the runner.

A stand-in for `nnspec train` until the language has train and parallel sections: those come as
JSON here (`--train-json '{"epochs": 30, "optimizer": {"name": "adamw", "kwargs": {"lr": 0.003}}}'`,
`--parallel-json '{"zero": 2}'`). Under the runner every rank runs this module:

    deepspeed --num_accelerators 2 --module nnspec.train specs/lenet5.nn --out out/x

Exit codes: 0 done, 1 errors in the spec, 2 bad settings or data, 130 interrupted (a checkpoint
was saved; --resume continues).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

EXIT_SPEC, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
CALL_FIELDS = ("data", "optimizer", "schedule", "loss")
PARALLEL_CALL_FIELDS = ("comm_hook", "local_sgd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nnspec.train", description=__doc__.splitlines()[0])
    p.add_argument("spec", help="the .nn file")
    p.add_argument("--out", required=True, help="folder for metrics, checkpoints and results")
    p.add_argument("--model", help="which model of the file (if it defines several)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a model parameter (repeatable)")
    p.add_argument("--train-json", default="{}", help="the train section as JSON")
    p.add_argument("--parallel-json", default="{}", help="the parallel section as JSON")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-at", type=int, help="stop after this many steps, with a checkpoint")
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)  # added by the runner
    return p.parse_args(argv)


def sections(train_json: str, parallel_json: str):
    """TrainSpec and ParallelSpec from JSON (lists become tuples, as the sections hold them)."""
    from nnspec.lang.config import ParallelSpec, TrainSpec
    train = _tuples(json.loads(train_json))
    for key in CALL_FIELDS:  # "adamw" is short for {"name": "adamw"}
        if isinstance(train.get(key), str):
            train[key] = {"name": train[key]}
    parallel = _tuples(json.loads(parallel_json))
    for key in PARALLEL_CALL_FIELDS:  # "bf16" is short for {"name": "bf16"}
        if isinstance(parallel, dict) and isinstance(parallel.get(key), str):
            parallel[key] = {"name": parallel[key]}
    return (TrainSpec.model_validate(train, strict=False),
            ParallelSpec.model_validate(parallel, strict=False))


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from nnspec import SpecError, load
    from nnspec.cli import UsageError
    from nnspec.lang.sections import parse_set
    from nnspec.train import distributed, run
    from nnspec.outputs import OutputError
    from nnspec.lang.resolve import root_spec_problem
    from nnspec.train.errors import TrainError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    main_rank = distributed.rank() == 0
    say = (lambda text: print(text, file=sys.stderr)) if main_rank else (lambda text: None)
    try:  # the command line: bad flags, JSON or section values are usage errors
        problem = root_spec_problem(args.spec)  # a FIFO would hang, a device never ends
        if problem:
            raise UsageError(problem)
        train, parallel = sections(args.train_json, args.parallel_json)
        overrides = parse_set(args.set)
    except (UsageError, ValueError) as err:  # ValidationError and bad JSON are ValueErrors
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        say(f"error: {_validation_text(first) if first else err}")
        return EXIT_USAGE
    try:
        spec = load(args.spec, model=args.model, **overrides)
        final = run(spec, train, parallel, Path(args.out), resume=args.resume,
                    progress=not args.no_progress, stop_at=args.stop_at)
    except SpecError as err:
        say(str(err))
        return EXIT_SPEC
    except TrainError as err:
        say(err.render())
        return EXIT_USAGE
    except OutputError as err:  # a non-empty --out without --resume, a file as --out
        say(f"error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # the same signal twice: no checkpoint could be agreed on
        say("interrupted")
        return EXIT_INTERRUPTED
    if main_rank:
        print(json.dumps(final, sort_keys=True))
    if final.get("status") == "interrupted":
        say(f"interrupted at step {final['step']}: a checkpoint is in {args.out}/checkpoints; "
            "--resume continues")
        return EXIT_INTERRUPTED
    return 0


def _validation_text(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


if __name__ == "__main__":
    sys.exit(main())
