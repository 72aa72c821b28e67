"""Which configurations to plan: the spec's own, its ZeRO/offload alternatives, or (`--auto`) the
whole space of ZeRO stage x offload x pipeline stages x micro-batch x gradient accumulation x
activation checkpointing for the spec's global batch size, ranked fastest-that-fits first."""
from __future__ import annotations

from nnspec.lang.config import ParallelConfigError, ParallelSpec, resolve_layout
from nnspec.plan.costs import block_patterns
from nnspec.plan.estimate import Choice, Cluster, Model, PlanError, evaluate
from nnspec.plan.profiles import Profile

# (zero, offload_optimizer, offload_param) a search tries; nvme only when the spec names a path
ZERO_OPTIONS = [(0, "none", "none"), (1, "none", "none"), (1, "cpu", "none"),
                (2, "none", "none"), (2, "cpu", "none"), (3, "none", "none"),
                (3, "cpu", "none"), (3, "cpu", "cpu")]
NVME_OPTIONS = [(3, "nvme", "none"), (3, "nvme", "nvme")]


def spec_choice(model: Model, cluster: Cluster) -> tuple[Choice, str | None]:
    """The spec's own parallel section at this cluster's world size, and a note when it had to
    be adapted (its data_parallel or batch split was written for another number of GPUs)."""
    parallel, world = model.parallel, cluster.world_size
    tries = [({}, None),
             ({"data_parallel": "auto"}, "data_parallel set to {dp} for {world} GPUs"),
             ({"data_parallel": "auto", "grad_accum": None},
              "data_parallel {dp}, grad_accum {accum} for {world} GPUs"),
             ({"data_parallel": "auto", "grad_accum": None, "micro_batch": None},
              "data_parallel {dp}, micro_batch {micro}, grad_accum {accum} for {world} GPUs")]
    first_error = None
    for changes, note in tries:
        adapted = with_settings(parallel, **changes)
        try:
            layout = resolve_layout(model.train, adapted, world)
        except ParallelConfigError as err:
            first_error = first_error or err
            continue
        choice = Choice.of(adapted, layout.micro_batch, layout.grad_accum)
        return choice, note and note.format(dp=layout.data_parallel, world=world,
                                            accum=layout.grad_accum, micro=layout.micro_batch)
    raise PlanError(f"the spec's parallel section does not fit {world} GPUs: "
                    + "; ".join(p.message for p in first_error.problems))


def alternatives(choice: Choice) -> list[Choice]:
    """The spec's choice under every ZeRO stage and offload it may use (same batch split)."""
    out = []
    for zero, opt, param in ZERO_OPTIONS:
        if choice.pipeline_stages > 1 and zero >= 2 or choice.tensor > 1 and zero == 3:
            continue
        alt = Choice(zero, opt, param, choice.pipeline_stages, choice.micro_batch,
                     choice.grad_accum, choice.activation_checkpointing, choice.tensor)
        if alt != choice:
            out.append(alt)
    return out


def layouts(model: Model, cluster: Cluster) -> tuple[list[tuple[int, int]], list[str]]:
    """(pipeline stages, tensor degree) pairs to search, and why others were left out. A
    tensor-parallel group stays inside one machine (its all-reduces run on every layer), so its
    degree divides the GPUs per machine; DeepSpeed's pipeline engine has no tensor axis, so the
    two are not combined."""
    world = cluster.world_size
    out, skipped = [], []
    for stages in _divisors(world):
        try:
            model.stages(stages)
        except PlanError as err:
            skipped.append(f"pipeline_stages {stages}: {err}")
        else:
            out.append((stages, 1))
    for tensor in _divisors(cluster.gpus_per_node)[1:]:
        problems = model.tensor_plan(tensor).indivisible
        if problems:
            skipped.append(f"tensor {tensor}: {next(iter(problems.values()))}")
        else:
            out.append((1, tensor))
    return out, skipped


def search_space(model: Model, cluster: Cluster) -> tuple[list[Choice], list[str]]:
    """Every configuration `--auto` considers, and why some pipeline depths or tensor degrees
    were left out."""
    world, batch = cluster.world_size, model.train.batch_size
    patterns = block_patterns(model.costs)
    checkpointing = [()] + ([patterns] if patterns else [])
    options = ZERO_OPTIONS + (NVME_OPTIONS if model.parallel.nvme_path else [])
    out: list[Choice] = []
    pairs, skipped = layouts(model, cluster)
    for stages, tensor in pairs:
        dp = world // (stages * tensor)
        if batch % dp:
            what = f"tensor {tensor}" if tensor > 1 else f"pipeline_stages {stages}"
            skipped.append(f"{what}: batch_size {batch} is not divisible by the data-parallel "
                           f"degree {dp}")
            continue
        for micro in _divisors(batch // dp):
            accum = batch // dp // micro
            for zero, opt, param in options:
                if stages > 1 and zero >= 2:
                    continue  # DeepSpeed's pipeline engine refuses ZeRO-2 and ZeRO-3
                if tensor > 1 and zero == 3:
                    # runs (tests/train/test_tensor_parallel.py), but this memory model of
                    # ZeRO-3 partitions of AutoTP shards is not measured yet: not proposed
                    continue
                for ckpt in checkpointing:
                    out.append(Choice(zero, opt, param, stages, micro, accum, ckpt, tensor))
    return out, skipped


def rank_key(plan: dict):
    """Fits first, then fastest; ties go to the simpler plan."""
    return (not plan["fits"], round(plan["est_step_seconds"], 9), plan["pipeline_stages"],
            plan["tensor_parallel"],
            plan["offload_param"] != "none", plan["offload_optimizer"] != "none",
            bool(plan["activation_checkpointing"]), plan["zero_stage"], -plan["micro_batch"])


def auto(model: Model, cluster: Cluster, profile: Profile) -> tuple[list[dict], list[str]]:
    """Every configuration of the space, evaluated and ranked, and notes on what was skipped."""
    choices, skipped = search_space(model, cluster)
    plans = [evaluate(model, c, cluster, profile) for c in choices]
    plans.sort(key=rank_key)
    return plans, skipped


def why_not(plans: list[dict], limit: int = 8) -> list[str]:
    """Why configurations do not fit: for each (ZeRO, offload, stages) family with no plan that
    fits, its closest miss; for the others, the smallest micro-batch that no longer fits."""
    misses: dict[tuple, dict] = {}
    fitting = {_family(p) for p in plans if p["fits"]}
    for p in plans:
        fam = _family(p)
        if p["fits"]:
            continue
        if fam in fitting:
            key = fam + (bool(p["activation_checkpointing"]),)
            if key not in misses or p["micro_batch"] < misses[key]["micro_batch"]:
                misses[key] = p
        elif fam not in misses or p["shortfall_bytes"] < misses[fam]["shortfall_bytes"]:
            misses[fam] = p
    never, larger = [], []
    for key, p in misses.items():
        ckpt = " with activation checkpointing" if p["activation_checkpointing"] else ""
        if len(key) == 5:  # a family without a fitting plan (no checkpointing flag)
            never.append((p["shortfall_bytes"], f"{describe(p)}: {p['reasons'][0]}, even at "
                          f"micro_batch {p['micro_batch']}{ckpt}"))
        else:
            larger.append((_rank_of(plans, key[:5]), f"{describe(p)}{ckpt}: micro_batch "
                           f"{p['micro_batch']} and larger: {p['reasons'][0]}"))
    lines = [line for _, line in sorted(never)] + [line for _, line in sorted(larger)]
    return lines[:limit]


def _rank_of(plans: list[dict], family: tuple) -> int:
    return next(i for i, p in enumerate(plans) if _family(p) == family)


def describe(p: dict) -> str:
    """`zero 3 + offload optimizer cpu, 2 stages` for a plan."""
    s = f"zero {p['zero_stage']}"
    if p["offload_optimizer"] != "none":
        s += f" + offload optimizer {p['offload_optimizer']}"
    if p["offload_param"] != "none":
        s += f" + offload param {p['offload_param']}"
    if p["pipeline_stages"] > 1:
        s += f", {p['pipeline_stages']} pipeline stages"
    if p["tensor_parallel"] > 1:
        s += f", tensor {p['tensor_parallel']}"
    return s


def _family(p: dict) -> tuple:
    return (p["zero_stage"], p["offload_optimizer"], p["offload_param"], p["pipeline_stages"],
            p["tensor_parallel"])


def with_settings(parallel: ParallelSpec, **changes) -> ParallelSpec:
    """The parallel section with some settings changed (None: back to its default, as if not
    written), validated again."""
    data = {k: getattr(parallel, k) for k in parallel.model_fields_set}
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return ParallelSpec.model_validate(data)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
