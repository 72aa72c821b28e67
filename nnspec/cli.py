"""The `nnspec` command: check, summary, compile, train, launch, compress, layers.

Exit codes: 0 success, 1 errors in the spec, 2 usage errors (bad flags, missing files).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .check import DEFAULT_MAX_PARAMS
from .compile import Spec, load
from .diagnostics import SpecError
from .resolve import root_spec_problem

EXIT_SPEC, EXIT_USAGE = 1, 2


class UsageError(Exception):
    pass


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set a=1 --set train.data=npz("d.npz") --set parallel.stage_boundaries=[layer3]` ->
    {"a": 1, "train.data": Call(npz, ...), ...}: values are written as in a spec (numbers,
    true/false, strings, words, lists, calls)."""
    from .sections import override_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not all(part.isidentifier() for part in key.split(".")):
            raise UsageError(f"--set expects NAME=VALUE, got `{item}`")
        try:
            out[key] = override_value(raw.strip())
        except ValueError as err:
            raise UsageError(f"--set {key}: cannot read `{raw.strip()}`: {err}") from None
    return out


def write_atomic(directory: Path, files: dict[str, str]) -> None:
    """Write every file or none: each goes to a temporary name first, then is renamed in place."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            staged.append((tmp, directory / name))
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _load(args) -> Spec:
    problem = root_spec_problem(args.spec)  # a FIFO would hang, a device never ends
    if problem:
        raise UsageError(problem)
    values = parse_set(args.set)
    params = {k: v for k, v in values.items() if "." not in k}
    sets = {k: v for k, v in values.items() if "." in k}
    return load(args.spec, model=args.model, max_params=args.max_params, sets=sets,
                world_size=getattr(args, "world_size", None), **params)


def cmd_check(args) -> int:
    spec = _load(args)
    s = spec.summary()
    print(f"ok: {spec.ir.signature}: {s['params']:,} parameters, {s['flops']:,} FLOPs per sample")
    return 0


def cmd_summary(args) -> int:
    spec = _load(args)
    if args.json:
        print(json.dumps(spec.summary(), indent=2, sort_keys=True))
    else:
        print(spec.summary_table(), end="")
    return 0


def cmd_compile(args) -> int:
    from .emit.deepspeed import dumps
    from .emit.launch import launch_script

    spec = _load(args)
    world = args.world_size or spec.world_size
    launch_args = [f"--set={item}" for item in args.set]
    files = {"model.py": spec.source,
             "summary.json": json.dumps(spec.summary(), indent=2, sort_keys=True) + "\n",
             "ds_config.json": dumps(spec.deepspeed_config(world)),
             "launch.sh": launch_script(args.spec, launch_args, num_accelerators=world)}
    write_atomic(Path(args.output), files)
    print(f"wrote {', '.join(sorted(files))} to {args.output}")
    return 0


def cmd_train(args) -> int:
    """Train in this process, or on every rank when the deepspeed runner started it."""
    from .train import DataError, TrainError, run

    spec = _load(args)
    try:
        final = run(spec, spec.settings.train, spec.settings.parallel, Path(args.out),
                    resume=args.resume, progress=not args.no_progress)
    except (DataError, TrainError) as err:
        print(err.render(), file=sys.stderr)
        return EXIT_SPEC
    if final is not None and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(final, sort_keys=True))
    return 130 if (final or {}).get("status") == "interrupted" else 0


def cmd_launch(args) -> int:
    """Build the deepspeed runner command for a spec and run it (or print it with --dry-run)."""
    import shlex
    import subprocess

    spec = _load(args)
    n = args.num_accelerators or args.num_gpus or spec.world_size
    flag = "--num_gpus" if args.num_gpus else "--num_accelerators"
    cmd = ["deepspeed"]
    if args.hostfile:
        if not Path(args.hostfile).is_file():
            raise UsageError(f"no such hostfile: {args.hostfile}")
        cmd += ["--hostfile", args.hostfile, "--no_ssh_check", "--master_addr", "127.0.0.1"]
    else:
        cmd += [flag, str(n)]
    import shutil

    exe = shutil.which("nnspec") or str(Path(sys.argv[0]).resolve())
    cmd += ["--no_python", "--no_local_rank", exe, "train", args.spec, "--out", args.out]
    cmd += [f"--set={item}" for item in args.set]
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    return subprocess.call(cmd)


def cmd_export_weights(args) -> int:
    """Consolidate a training checkpoint (ZeRO shards too) into one fp32 state_dict file."""
    from .train.export import ExportError, export_weights

    spec = None
    if args.spec:
        args.max_params = DEFAULT_MAX_PARAMS
        spec = _load(args)
    try:
        used, count = export_weights(args.ckpt, args.output, spec)
    except ExportError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {count} tensors from {used} to {args.output}")
    return 0


def cmd_compress(args) -> int:
    """Train (unless --weights), compress as the spec's compress section says, write DIR."""
    from .compress.errors import CompressError
    from .compress.pipeline import compress, summary_table
    from .train import DataError, TrainError

    spec = _load(args)
    try:
        result = compress(spec, Path(args.output), args.weights,
                          log=lambda m: print(m, file=sys.stderr))
    except (CompressError, DataError, TrainError) as err:
        print(err.render(), file=sys.stderr)
        return EXIT_SPEC
    print(summary_table(result), end="")
    print(f"wrote {args.output}")
    return 0


def cmd_plan(args) -> int:
    """Per-GPU memory, FLOPs and step time of the parallel plan, before launch."""
    from .plan.command import UsageProblem, cluster_of, run

    try:
        cluster_of(args)  # bad flags are usage errors, whatever the spec holds
        return run(args, _load(args))
    except UsageProblem as err:
        raise UsageError(str(err)) from None


def cmd_layers(args) -> int:
    from .reference import reference_markdown
    print(reference_markdown(), end="")
    return 0


def _spec_parser(sub, name: str, help: str, func: Callable) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("spec", help="the .nn file")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a model parameter (num_classes=10) or a setting "
                   "(train.epochs=5, parallel.zero=3); repeatable")
    p.add_argument("--model", help="which model of the file, when it defines several")
    p.add_argument("--max-params", type=int, default=DEFAULT_MAX_PARAMS,
                   help="refuse models with more parameters (default: %(default)s)")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnspec", description="Compile .nn network specs to PyTorch.")
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _spec_parser(sub, "check", "validate a spec", cmd_check)
    p = _spec_parser(sub, "summary", "print the per-layer table", cmd_summary)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = _spec_parser(sub, "compile", "write model.py, summary.json, ds_config.json, launch.sh",
                     cmd_compile)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--world-size", type=int, help="processes the DeepSpeed config is for "
                   "(default: data_parallel x pipeline_stages of the spec, else 1)")
    p = _spec_parser(sub, "train", "train the spec (one process, or every rank under deepspeed)",
                     cmd_train)
    p.add_argument("--out", default="out", help="folder for metrics, checkpoints, final.json")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _spec_parser(sub, "launch", "run `nnspec train` under the deepspeed runner", cmd_launch)
    p.add_argument("--num-gpus", type=int, help="processes per machine on GPU machines")
    p.add_argument("--num-accelerators", type=int, help="processes on this machine (CPU or GPU)")
    p.add_argument("--hostfile", help="an MPI-style hostfile for several machines")
    p.add_argument("--out", default="out", help="output folder of the run")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p = sub.add_parser("export-weights", help="one fp32 state_dict (.safetensors or .pt) from a "
                       "checkpoint of `nnspec train`, ZeRO shards consolidated")
    p.add_argument("ckpt", help="checkpoints/step-N.pt, checkpoints/step-N/, or checkpoints/ "
                   "(the newest complete one)")
    p.add_argument("-o", "--output", required=True, help="model.safetensors or model.pt")
    p.add_argument("--spec", help="check that the weights load into this spec's model strictly")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="model parameters of --spec (num_classes=10); repeatable")
    p.add_argument("--model", help="which model of --spec, when it defines several")
    p.set_defaults(func=cmd_export_weights)
    p = _spec_parser(sub, "compress", "prune, quantize or distill as the compress section says",
                     cmd_compress)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--weights", help="trained weights (default: train the spec first)")
    p = _spec_parser(sub, "plan", "per-GPU memory, FLOPs and step time of the parallel plan; "
                     "--auto finds the fastest that fits", cmd_plan)
    from .plan.command import add_arguments
    add_arguments(p)
    sub.add_parser("layers", help="print the reference of every layer kind").set_defaults(func=cmd_layers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_SPEC
    except UsageError as err:
        print(f"nnspec: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
