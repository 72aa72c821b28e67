"""`nnspec plan`: per-GPU memory, FLOPs and step time of a spec's parallel plan before launch,
and (`--auto`) the fastest plan that fits, optionally written back into the spec."""
from __future__ import annotations

import re
import sys
from pathlib import Path

TOP = 5
# bounds that keep the search finite and its numbers meaningful; checked before any search
MAX_GPUS_PER_NODE = 1024
MAX_WORLD = 2 ** 20

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_size(text: str, flag: str) -> int:
    """`80GB` (1e9 bytes), `80GiB` (2^30), `512G` is refused: say which."""
    m = _SIZE.fullmatch(text or "")
    if not m or (m.group(2) is None and not text.strip().isdigit()):
        raise ValueError(f"{flag} expects a size such as 80GB or 80GiB, got `{text}`")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()]
    if value < 1:
        raise ValueError(f"{flag} must be positive, got `{text}`")
    return int(value)


def add_arguments(p) -> None:
    """The flags of `nnspec plan` (the spec, --set, --model come from the shared spec parser)."""
    p.add_argument("--gpus", type=int, required=True, metavar="N",
                   help="GPUs per machine (like deepspeed --num_gpus)")
    p.add_argument("--nodes", type=int, default=1, metavar="M", help="machines (default 1)")
    p.add_argument("--gpu-memory", metavar="SIZE", help="memory per GPU, e.g. 80GB or 80GiB "
                   "(default: the profile's)")
    p.add_argument("--cpu-memory", metavar="SIZE", help="CPU memory per machine, e.g. 512GB "
                   "(default: not checked)")
    p.add_argument("--profile", metavar="NAME|FILE.json", help="device profile for the time "
                   "estimate: a100-40gb, a100-80gb (default), h100-80gb, h200, v100, cpu, or a "
                   "JSON file with the same fields")
    p.add_argument("--json", action="store_true", help='print {"params": N, "configs": [...]}')
    p.add_argument("--auto", action="store_true", help="search ZeRO stage, offload, pipeline "
                   "stages, tensor parallelism, micro-batch, accumulation and checkpointing for "
                   "the fastest plan that fits")
    p.add_argument("--write", action="store_true", help="with --auto: write the chosen plan into "
                   "the spec's parallel section")


class UsageProblem(ValueError):
    pass


def cluster_of(args):
    from nnspec.plan.estimate import Cluster
    from nnspec.plan.profiles import ProfileError, load_profile

    if args.gpus is None or args.gpus < 1:
        raise UsageProblem(f"--gpus must be at least 1, got {args.gpus}")
    if args.gpus > MAX_GPUS_PER_NODE:
        raise UsageProblem(f"--gpus is GPUs per machine, at most {MAX_GPUS_PER_NODE}, got "
                           f"{args.gpus}; use --nodes for more machines")
    if args.nodes < 1:
        raise UsageProblem(f"--nodes must be at least 1, got {args.nodes}")
    if args.gpus * args.nodes > MAX_WORLD:
        raise UsageProblem(f"--gpus x --nodes is {args.gpus * args.nodes} GPUs; plans go up to "
                           f"{MAX_WORLD}")
    if args.write and not args.auto:
        raise UsageProblem("--write needs --auto (it writes the plan --auto chooses)")
    try:
        profile = load_profile(args.profile)
        gpu = parse_size(args.gpu_memory, "--gpu-memory") if args.gpu_memory else \
            int(profile.memory_gb * 1e9)
        cpu = parse_size(args.cpu_memory, "--cpu-memory") if args.cpu_memory else None
    except (ProfileError, ValueError) as err:
        raise UsageProblem(str(err)) from None
    return Cluster(args.gpus, args.nodes, gpu, cpu), profile


def run(args, spec) -> int:
    """Plan `spec` (already loaded) as the flags say; returns the exit code."""
    from nnspec.plan.estimate import Model, PlanError, evaluate
    from nnspec.plan.memory import optimizer_state_bytes
    from nnspec.plan.report import explain, header, table, to_json
    from nnspec.plan.search import alternatives, auto, spec_choice, why_not

    cluster, profile = cluster_of(args)
    if spec.members:  # an ensemble: each member's training, and the peak over the run
        from nnspec.plan.ensemble import EnsemblePlanError, run_ensemble
        try:
            return run_ensemble(args, spec, cluster, profile)
        except EnsemblePlanError as err:
            raise UsageProblem(str(err)) from None
    s = spec.settings
    model = Model(spec.ir, s.train, s.parallel)
    params = spec.summary()["params"]
    assert params == model.costs.params, "the planner and the summary disagree"
    note, skipped = None, []
    try:
        if args.auto:
            plans, skipped = auto(model, cluster, profile)
            for p in plans:
                p["source"] = "auto"
        else:
            own, note = spec_choice(model, cluster)
            plans = [evaluate(model, own, cluster, profile)]
            plans[0]["source"] = "spec"
            for alt in alternatives(own):
                plans.append(dict(evaluate(model, alt, cluster, profile), source="alternative"))
    except PlanError as err:
        print(f"nnspec: error: {err}", file=sys.stderr)
        return 1
    if not plans:  # every layout was skipped: the batch cannot be shared by this many GPUs
        why = f": {skipped[0]}" if skipped else ""
        raise UsageProblem(f"no parallel plan for {cluster.world_size} GPUs{why}")
    if args.json:
        print(to_json(params, plans))
    else:
        opt = s.train.optimizer.name
        print(header(spec.ir.signature, params, model.costs.flops, cluster, profile,
                     model.precision, opt, optimizer_state_bytes(opt, s.train.optimizer.kwargs)[0]))
        shown = plans[:TOP] if args.auto else plans
        print(table(shown), end="")
        print()
        if args.auto:
            _print_auto(plans, skipped, explain, why_not)
        else:
            print(("the spec's own plan (row 1)" + (f", adapted: {note}" if note else "")) + ": "
                  + explain(plans[0]))
    if args.write:
        return _write(args, spec, plans, cluster)
    return 0


def _print_auto(plans, skipped, explain, why_not) -> None:
    fitting = [p for p in plans if p["fits"]]
    print(f"searched {len(plans)} configurations; {len(fitting)} fit")
    only = only_tensor_fits(plans)
    if only:
        print(only)
    for i, p in enumerate(fitting[:3], 1):
        print(f"  {i}. {explain(p)}")
    misses = why_not(plans)
    if misses:
        print("do not fit:")
        for line in misses:
            print(f"  - {line}")
    for line in skipped:
        print(f"  - {line}")


def only_tensor_fits(plans: list[dict]) -> str | None:
    """The line that says tensor parallelism is the only way to fit, when it is."""
    fitting = [p for p in plans if p["fits"]]
    whole = [p for p in plans if p["tensor_parallel"] == 1]
    if not fitting or not whole or any(p["tensor_parallel"] == 1 for p in fitting):
        return None
    from nnspec.plan.estimate import gib
    from nnspec.plan.search import describe

    degrees = sorted({p["tensor_parallel"] for p in fitting})
    closest = min(whole, key=lambda p: p["shortfall_bytes"] or float("inf"))
    return (f"only tensor parallelism fits (tensor {' or '.join(map(str, degrees))}): without it "
            f"the closest plan, {describe(closest)} at micro_batch {closest['micro_batch']}, "
            f"{closest['reasons'][0]}")


def _write(args, spec, plans, cluster) -> int:
    from nnspec.compile import load
    from nnspec.lang.sections import parse_set
    from nnspec.plan.rewrite import RewriteError, plan_settings, rewrite_parallel, write_spec

    best = next((p for p in plans if p["fits"]), None)
    if best is None:
        print("nnspec: error: no configuration fits; the spec is unchanged", file=sys.stderr)
        return 1
    path = Path(args.spec)
    text = path.read_text(encoding="utf-8")
    source = spec.program.root_source
    if source is not None and source.text != text:
        print(f"nnspec: error: {path} changed while it was planned; run again", file=sys.stderr)
        return 1
    try:
        new = rewrite_parallel(text, spec.program.sections.get("parallel"), plan_settings(best))
    except RewriteError as err:
        print(f"nnspec: error: {err}", file=sys.stderr)
        return 1

    try:
        overrides = {k: v for k, v in parse_set(args.set).items() if "." not in k}
    except ValueError as err:
        raise UsageProblem(str(err)) from None

    def check(tmp: Path) -> None:
        checked = load(tmp, model=args.model, max_params=args.max_params,
                       world_size=cluster.world_size, **overrides)
        checked.deepspeed_config(cluster.world_size)

    write_spec(path, new, check)
    print(f"wrote the plan into the parallel section of {path}",
          file=sys.stderr if args.json else sys.stdout)
    return 0
