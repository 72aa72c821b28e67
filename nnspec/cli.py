"""The `nnspec` command: check, summary, compile, train, launch, compress, plan, graph, export,
fmt, layers, lsp.

Exit codes: 0 success, 1 errors in the spec, 2 usage errors (bad flags, missing files).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from nnspec import __version__
from nnspec.lang.check import DEFAULT_MAX_PARAMS
from nnspec.compile import Spec, load
from nnspec.lang.diagnostics import SpecError
from nnspec.outputs import OutputError, check_file, check_folder, owned_files, write_folder
from nnspec.lang.resolve import root_spec_problem
from nnspec.lang.sections import parse_set

EXIT_SPEC, EXIT_USAGE = 1, 2


class UsageError(Exception):
    pass


def output_folder(path: str, flag: str, kind: str) -> Path:
    """Check a command's output folder before any work: a usable path that is missing, empty, or
    an earlier output of the same command (which is then replaced whole)."""
    folder = check_folder(path, flag)
    if folder.is_dir() and any(folder.iterdir()) and owned_files(folder, kind) is None:
        raise OutputError(f"{flag} {path}: holds files nnspec did not write (or another "
                          "command's output); nnspec never deletes those: choose another folder, "
                          "or empty it")
    return folder


def positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}")


def _load(args) -> Spec:
    problem = root_spec_problem(args.spec)  # a FIFO would hang, a device never ends
    if problem:
        raise UsageError(problem)
    try:
        values = parse_set(args.set)
    except ValueError as err:
        raise UsageError(str(err)) from None
    params = {k: v for k, v in values.items() if "." not in k}
    sets = {k: v for k, v in values.items() if "." in k}
    return load(args.spec, model=args.model, max_params=args.max_params, sets=sets,
                world_size=getattr(args, "world_size", None), **params)


def cmd_check(args) -> int:
    spec = _load(args)
    s = spec.summary()
    from nnspec.emit.text import comment_text  # a string argument may hold terminal control codes

    print(f"ok: {comment_text(spec.ir.signature)}: {s['params']:,} parameters, "
          f"{s['flops']:,} FLOPs per sample")
    if spec.warnings:  # on stderr, as errors are: stdout stays the one `ok` line
        from nnspec.lang.diagnostics import use_color

        color = use_color(sys.stderr, getattr(args, "color", "auto"))
        print("\n\n".join(w.render(color) for w in spec.warnings), file=sys.stderr)
    return 0


def cmd_summary(args) -> int:
    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be at least 0, got {args.depth}")
    positive("--batch-size", args.batch_size)
    spec = _load(args)
    if args.json:
        from nnspec.emit.summary import dumps
        print(dumps(spec.summary(args.depth)))
    else:
        print(spec.summary_table(args.depth, args.batch_size), end="")
    return 0


def cmd_compile(args) -> int:
    from nnspec.emit.deepspeed import dumps
    from nnspec.emit.launch import launch_script
    from nnspec.emit.summary import dumps as summary_json

    positive("--world-size", args.world_size)
    out = output_folder(args.output, "-o", "compile")
    spec = _load(args)
    world = args.world_size or spec.world_size
    launch_args = [f"--set={item}" for item in args.set]
    files = {"model.py": spec.source,
             "summary.json": summary_json(spec.summary()) + "\n",
             "ds_config.json": dumps(spec.deepspeed_config(world)),
             "launch.sh": launch_script(args.spec, launch_args, num_accelerators=world)}
    write_folder(out, files, "compile", executable=frozenset({"launch.sh"}))
    print(f"wrote {', '.join(sorted(files))} to {args.output}")
    return 0


def cmd_train(args) -> int:
    """Train in this process, or on every rank when the deepspeed runner started it."""
    from nnspec.train import DataError, TrainError, run
    from nnspec.train.safeload import UnsafeCheckpoint
    from nnspec.weights import WeightsFileError

    if args.out is not None:
        check_folder(args.out, "--out", replaced=False)
    if args.weights is not None and not Path(args.weights).exists():
        raise UsageError(f"--weights {args.weights}: no such file or folder")
    spec = _load(args)
    try:
        final = run(spec, spec.settings.train, spec.settings.parallel, args.out,
                    resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite,
                    weights=args.weights)
    except (DataError, TrainError) as err:
        print(err.render(), file=sys.stderr)
        return EXIT_USAGE if isinstance(err, (UnsafeCheckpoint, WeightsFileError)) else EXIT_SPEC
    except (MemoryError, RuntimeError) as err:
        raise _out_of_memory(err) from None
    if final is not None and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(final, sort_keys=True))
    return 130 if (final or {}).get("status") == "interrupted" else 0


def _out_of_memory(err: BaseException) -> Exception:
    """A UsageError for a run that ran out of memory; other RuntimeErrors go on as they are."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, MemoryError):
        return UsageError(f"out of memory: {text or 'an allocation failed'}; use smaller data, "
                          "batches or model")
    if any(words in text.lower() for words in ("not enough memory", "out of memory",
                                                 "can't allocate memory")):
        return UsageError(f"out of memory: {text}")
    return err


def cmd_launch(args) -> int:
    """Build the deepspeed runner command for a spec and run it (or print it with --dry-run)."""
    import shlex
    import subprocess

    from nnspec.train.runs import check_out_dir, new_run_folder

    positive("--num-accelerators", args.num_accelerators)
    positive("--num-gpus", args.num_gpus)
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out: the folder of the run to continue")
    if args.weights is not None and not Path(args.weights).exists():
        raise UsageError(f"--weights {args.weights}: no such file or folder")
    spec = _load(args)
    if args.out is not None:
        check_out_dir(args.out, spec, args.resume, args.overwrite)
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
    cmd += ["--no_python", "--no_local_rank", exe, "train", args.spec]
    cmd += [f"--set={item}" for item in args.set]
    cmd += [opt for opt in ("--resume", "--overwrite") if getattr(args, opt[2:])]
    cmd += ["--weights", str(Path(args.weights).resolve())] if args.weights else []
    if args.dry_run:  # claims no folder: without --out, the runner's rank 0 claims one
        print(shlex.join(cmd + (["--out", args.out] if args.out else [])))
        return 0
    # the ranks must agree on one folder: claim it here, before the runner starts them
    out = args.out or str(new_run_folder(spec.name))
    if args.out is None:
        print(f"run folder: {out}", file=sys.stderr, flush=True)
    return subprocess.call(cmd + ["--out", out])


def cmd_export_weights(args) -> int:
    """Consolidate a training checkpoint (ZeRO shards too) into one fp32 state_dict file."""
    from nnspec.train.export import ExportError, export_weights

    if args.hf:
        if not args.spec:
            raise UsageError("--hf needs --spec: its weights section maps the names")
        output_folder(args.output, "-o", "hf-weights")
    else:
        check_file(args.output, "-o")
    spec = None
    if args.spec:
        args.max_params = DEFAULT_MAX_PARAMS
        spec = _load(args)
    try:
        used, count = export_weights(args.ckpt, args.output, spec, hf=args.hf)
    except ExportError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {count} tensors from {used} to {args.output}")
    return 0


def cmd_export(args) -> int:
    """Export the spec's module to ONNX, checked with onnx.checker and onnxruntime first."""
    from nnspec.export.onnx_file import (OnnxExportError, check_onnx_output, export_onnx,
                                         missing_packages, newest_opset)
    from nnspec.train.safeload import UnsafeCheckpoint
    from nnspec.weights import WeightsFileError

    missing = missing_packages()
    if missing:
        raise UsageError(f"--onnx needs {', '.join(missing)}: pip install 'nnspec[onnx]'")
    check_onnx_output(args.onnx)
    if args.opset is not None and not 7 <= args.opset <= newest_opset():
        raise UsageError(f"--opset must be an ONNX opset from 7 to {newest_opset()}, got "
                         f"{args.opset}")
    if args.weights is not None and not Path(args.weights).exists():
        raise UsageError(f"--weights {args.weights}: no such file or folder")
    spec = _load(args)
    try:
        done = export_onnx(spec, args.onnx, weights=args.weights, opset=args.opset)
    except (WeightsFileError, UnsafeCheckpoint) as err:
        print(err.render(), file=sys.stderr)
        return EXIT_USAGE
    except OnnxExportError as err:
        raise UsageError(str(err)) from None
    ports = "; ".join(f"{name} {done.shapes.get(name, '')}".rstrip()
                      for name in done.inputs + done.outputs)
    print(f"wrote {args.onnx} (opset {done.opset}): {ports}")
    print(f"checked: onnx.checker passes; onnxruntime matches PyTorch on a random batch, max abs "
          f"diff {done.max_abs_diff:.3g} (atol {done.atol:g}, rtol {done.rtol:g})")
    return 0


def cmd_compress(args) -> int:
    """Train (unless --weights), compress as the spec's compress section says, write DIR."""
    from nnspec.compress.errors import CompressError
    from nnspec.compress.command import compress, summary_table
    from nnspec.train import DataError, TrainError
    from nnspec.train.safeload import UnsafeCheckpoint

    out = output_folder(args.output, "-o", "compress")
    if args.weights is not None and not Path(args.weights).is_file():
        raise UsageError(f"--weights {args.weights}: no such file")
    spec = _load(args)
    try:
        result = compress(spec, out, args.weights,
                          log=lambda m: print(m, file=sys.stderr))
    except (CompressError, DataError, TrainError) as err:
        print(err.render(), file=sys.stderr)
        return EXIT_USAGE if isinstance(err, UnsafeCheckpoint) else EXIT_SPEC
    print(summary_table(result), end="")
    print(f"wrote {args.output}")
    return 0


def cmd_plan(args) -> int:
    """Per-GPU memory, FLOPs and step time of the parallel plan, before launch."""
    from nnspec.plan.command import UsageProblem, cluster_of, run

    try:
        cluster_of(args)  # bad flags are usage errors, whatever the spec holds
        return run(args, _load(args))
    except UsageProblem as err:
        raise UsageError(str(err)) from None


def cmd_graph(args) -> int:
    """Draw the network: SVG or PNG laid out here, or DOT text for Graphviz."""
    from nnspec.emit.graph_png import PictureTooLarge
    from nnspec.emit.graph_render import FORMATS, render
    from nnspec.outputs import replace_file

    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be at least 0, got {args.depth}")
    out = check_file(args.output, "-o")
    fmt = args.format or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"-o {args.output}: cannot tell the format from the file name; name a "
                         f".svg, .png or .dot file, or pass --format {'|'.join(FORMATS)}")
    spec = _load(args)
    try:
        data = render(spec.lowered, fmt, args.depth)
    except PictureTooLarge as err:
        raise UsageError(f"-o {args.output}: {err}") from None
    out.parent.mkdir(parents=True, exist_ok=True)  # as export-weights does
    replace_file(out, lambda tmp: tmp.write_bytes(data))
    print(f"wrote {args.output}")
    return 0


def cmd_layers(args) -> int:
    from nnspec.emit.reference import reference_markdown
    from nnspec.layers import REGISTRY
    from nnspec.lang.diagnostics import did_you_mean

    if args.kind is None:
        print(reference_markdown(REGISTRY), end="")
    elif args.kind in REGISTRY:
        print(reference_markdown([args.kind]), end="")
    else:
        raise UsageError(f"no layer kind `{args.kind}`: "
                         + REGISTRY.unknown_kind_help(did_you_mean(args.kind, REGISTRY)))
    return 1 if REGISTRY.failed else 0  # each broken plugin was named on stderr


def cmd_lsp(args) -> int:
    try:
        from nnspec.lsp.server import serve
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in ("pygls", "lsprotocol", "cattrs", "attrs"):
            raise
        raise UsageError(f"`nnspec lsp` needs pygls (no module {err.name}): "
                         "pip install 'nnspec[lsp]'") from None
    serve()
    return 0


def cmd_fmt(args) -> int:
    """Format specs in place, or (--check) list those that are not formatted."""
    from nnspec.lang.fmt_files import FmtUsageError, format_files

    try:
        return format_files(args.spec, args.check)
    except FmtUsageError as err:
        raise UsageError(str(err)) from None


def _spec_parser(sub, name: str, help: str, func: Callable) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("spec", help="the .nn file")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a model parameter (num_classes=10) or a setting "
                   "(train.epochs=5, parallel.zero=3); repeatable")
    p.add_argument("--model", help="which model of the file, when it defines several")
    p.add_argument("--max-params", type=int, default=DEFAULT_MAX_PARAMS,
                   help="refuse models with more parameters (default: %(default)s)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", metavar="WHEN",
                   help="colour the errors: always, never, or auto (the default): on a terminal "
                   "unless NO_COLOR is set")
    p.set_defaults(func=func)
    return p


def _run_folder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="the run's folder for metrics, checkpoints, final.json "
                   "(default: a new runs/MODEL/version_N); one holding files is refused unless "
                   "--resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its "
                   "last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty --out, "
                   "replacing the files nnspec wrote there (other files are kept)")
    p.add_argument("--weights", help="fine-tune: start from these weights (.safetensors, a torch "
                   "state_dict, or a Hugging Face folder), mapped by the spec's weights section")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnspec", description="Compile .nn network specs to PyTorch.")
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _spec_parser(sub, "check", "validate a spec", cmd_check)
    p = _spec_parser(sub, "summary", "print the per-layer table", cmd_summary)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--depth", type=int, metavar="N", help="show blocks nested deeper than N as "
                   "one row each, with their parameters and FLOPs summed (0: top-level rows "
                   "only; default: all)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="samples the table's "
                   "input and forward/backward pass sizes are for (default: %(default)s)")
    p = _spec_parser(sub, "compile", "write model.py, summary.json, ds_config.json, launch.sh",
                     cmd_compile)
    p.add_argument("-o", "--output", required=True, help="output folder: written whole, in one "
                   "step; an earlier `nnspec compile` output there is replaced, a folder holding "
                   "other files is refused")
    p.add_argument("--world-size", type=int, help="processes the DeepSpeed config is for "
                   "(default: data_parallel x pipeline_stages of the spec, else 1)")
    p = _spec_parser(sub, "train", "train the spec (one process, or every rank under deepspeed)",
                     cmd_train)
    _run_folder_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _spec_parser(sub, "launch", "run `nnspec train` under the deepspeed runner", cmd_launch)
    p.add_argument("--num-gpus", type=int, help="processes per machine on GPU machines")
    p.add_argument("--num-accelerators", type=int, help="processes on this machine (CPU or GPU)")
    p.add_argument("--hostfile", help="an MPI-style hostfile for several machines")
    _run_folder_arguments(p)
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
    p.add_argument("--hf", action="store_true", help="write -o as a Hugging Face folder "
                   "(config.json + model.safetensors) through --spec's weights section")
    p.set_defaults(func=cmd_export_weights)
    p = _spec_parser(sub, "compress", "prune, quantize or distill as the compress section says",
                     cmd_compress)
    p.add_argument("-o", "--output", required=True, help="output folder: written whole, in one "
                   "step; an earlier `nnspec compress` output there is replaced, a folder holding "
                   "other files is refused")
    p.add_argument("--weights", help="trained weights (default: train the spec first)")
    p = _spec_parser(sub, "export", "export the model to ONNX, checked with onnxruntime",
                     cmd_export)
    p.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write: "
                   "written whole, after onnxruntime reproduced the module's outputs; an earlier "
                   "nnspec export there is replaced, any other file is refused")
    p.add_argument("--weights", help="the model's weights (.safetensors, a torch state_dict, or a "
                   "Hugging Face folder), mapped by the spec's weights section (default: random "
                   "init, seed 0)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; 18 and later "
                   "convert reliably)")
    p = _spec_parser(sub, "plan", "per-GPU memory, FLOPs and step time of the parallel plan; "
                     "--auto finds the fastest that fits", cmd_plan)
    from nnspec.plan.command import add_arguments
    add_arguments(p)
    p = _spec_parser(sub, "graph", "draw the network: blocks as groups, shapes on the edges, "
                     "parameter counts on the nodes (SVG, PNG or DOT)", cmd_graph)
    p.add_argument("-o", "--output", required=True, help="the picture to write: net.svg, net.png "
                   "or net.dot (written whole, in one step)")
    p.add_argument("--depth", type=int, help="draw blocks nested deeper than N as one node "
                   "each (0: every top-level block is one node; default: all blocks open)")
    p.add_argument("--format", choices=("svg", "png", "dot"), help="the picture's format "
                   "(default: from -o's suffix)")
    p = sub.add_parser("fmt", help="format specs in one canonical layout, comments kept; "
                       "--check lists the files that are not formatted")
    p.add_argument("spec", nargs="+", help="a .nn file, a folder of them, or `-` "
                   "(stdin to stdout)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any file "
                   "would be reformatted (for CI and pre-commit)")
    p.set_defaults(func=cmd_fmt)
    p = sub.add_parser("layers", help="print the reference of every layer kind, those of "
                       "installed plugins too")
    p.add_argument("kind", nargs="?", help="print only this layer kind")
    p.set_defaults(func=cmd_layers)
    p = sub.add_parser("lsp", help="run the language server on stdin/stdout, for editors "
                       "(diagnostics as you type, hover shapes, definitions, completion)")
    p.set_defaults(func=cmd_lsp)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        from nnspec.lang.diagnostics import use_color
        print(err.render(use_color(sys.stderr, getattr(args, "color", "auto"))), file=sys.stderr)
        return EXIT_SPEC
    except (UsageError, OutputError) as err:
        print(f"nnspec: error: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `nnspec summary --json | head`: the reader left, as with `cat`
        # stdout is dead; point it at devnull so the interpreter's final flush cannot raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141   # 128 + SIGPIPE, what a shell reports for a command killed by it


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
