"""Compile-time checks of a `parallel` section against its `train` section for one world size:
the batch layout (micro-batch x accumulation x data-parallel), ZeRO and offload, pipeline
placement, precision and gradient communication (engine ddp's in ddp_checks)."""
from __future__ import annotations

from typing import NamedTuple, Optional

from nnspec.lang.config.ddp_checks import ddp_problems
from nnspec.lang.config.models import ParallelSpec, TrainSpec
from nnspec.lang.config.optim import _is_int
from nnspec.lang.config.train_checks import Problem, check_train


class ParallelConfigError(ValueError):
    """Raised by `resolve_layout` (and the emitters) when `check_parallel` found errors."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{p.key}: {p.message}" for p in problems))


class Layout(NamedTuple):
    """How a global batch is split, for one world size: batch_size = micro_batch x grad_accum x
    data_parallel, and world_size = data_parallel x pipeline_stages x tensor (the ranks of one
    tensor-parallel group see the same samples)."""

    world_size: int
    data_parallel: int
    pipeline_stages: int
    batch_size: int
    micro_batch: int
    grad_accum: int
    tensor: int = 1


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _multiples_near(n: int, k: int) -> str:
    low, high = (n // k) * k, (n // k + 1) * k
    return f"{low} or {high}" if low > 0 else str(high)


def _data_parallel(parallel: ParallelSpec, world_size: int) -> Optional[int]:
    model = parallel.pipeline_stages * parallel.tensor  # ranks that hold one model copy
    if world_size % model:
        return None
    if parallel.data_parallel == "auto":
        return world_size // model
    return parallel.data_parallel if parallel.data_parallel * model == world_size else None


def _tensor_problems(parallel: ParallelSpec, world_size: int, out: list[Problem]) -> bool:
    """`tensor` against the world size and the pipeline; True when the layout can go on."""
    tensor, stages = parallel.tensor, parallel.pipeline_stages
    if tensor == 1:
        return True
    ok = True
    if stages > 1:
        # PipelineModule's topology is stages x data-parallel (runtime/pipe/module.py,
        # PipeDataParallelTopology): it has no tensor-parallel axis for AutoTP's groups
        out.append(Problem("tensor", f"tensor {tensor} cannot be combined with pipeline_stages "
                           f"{stages}: DeepSpeed's pipeline engine has no tensor-parallel "
                           "dimension (its topology is stages x data-parallel)",
                           "set pipeline_stages = 1 to split layers across ranks, or tensor = 1"))
    if world_size % (tensor * stages):
        what = f"tensor {tensor}" + (f" x pipeline_stages {stages} = {tensor * stages}"
                                      if stages > 1 else "")
        divs = ", ".join(str(d) for d in _divisors(world_size) if (world_size // d) % stages == 0)
        out.append(Problem("tensor", f"{what} does not divide the world size {world_size}",
                           f"launch a multiple of {tensor * stages} processes, or set tensor to "
                           f"one of {divs}"))
        ok = False
    return ok


def _layout_problems(train: TrainSpec, parallel: ParallelSpec, world_size: int,
                     out: list[Problem]) -> Optional[Layout]:
    stages, dp_setting, tensor = parallel.pipeline_stages, parallel.data_parallel, parallel.tensor
    if not _tensor_problems(parallel, world_size, out):
        return None
    if world_size % stages:
        divs = ", ".join(map(str, _divisors(world_size)))
        out.append(Problem(
            "pipeline_stages", f"pipeline_stages {stages} does not divide the world size "
            f"{world_size}",
            f"launch a multiple of {stages} processes, or set pipeline_stages to a divisor of "
            f"{world_size} ({divs})"))
        return None
    if dp_setting != "auto" and dp_setting * stages * tensor != world_size:
        by_tensor = f" x tensor {tensor}" if tensor > 1 else ""
        out.append(Problem(
            "data_parallel", f"data_parallel {dp_setting}{by_tensor} x pipeline_stages {stages} "
            f"= {dp_setting * stages * tensor} != world size {world_size}",
            f"set data_parallel = {world_size // (stages * tensor)}, or data_parallel = auto"))
        return None
    dp = _data_parallel(parallel, world_size)
    batch, micro = train.batch_size, parallel.micro_batch
    accum, accum_given = parallel.grad_accum, "grad_accum" in parallel.model_fields_set
    if micro is not None and accum_given:
        if micro * accum * dp != batch:
            fixes = []
            if batch % (accum * dp) == 0:
                fixes.append(f"micro_batch = {batch // (accum * dp)}")
            if batch % (micro * dp) == 0:
                fixes.append(f"grad_accum = {batch // (micro * dp)}")
            fixes.append(f"batch_size = {micro * accum * dp}")
            out.append(Problem(
                "micro_batch", f"batch_size {batch} != micro_batch {micro} x grad_accum {accum} x "
                f"data-parallel {dp} = {micro * accum * dp}",
                "set " + ", or ".join(fixes)))
            return None
    elif micro is not None:
        if batch % (micro * dp):
            out.append(Problem(
                "micro_batch", f"batch_size {batch} is not divisible by micro_batch {micro} x "
                f"data-parallel {dp} = {micro * dp}",
                f"set batch_size = {_multiples_near(batch, micro * dp)}, or a micro_batch that "
                f"divides batch_size / data-parallel" if batch % dp == 0 else
                f"set batch_size = {_multiples_near(batch, micro * dp)}"))
            return None
        accum = batch // (micro * dp)
    else:
        if batch % (accum * dp):
            key = "grad_accum" if accum_given else "batch_size"
            per_rank = (f", or grad_accum to a divisor of {batch // dp} (batch_size / "
                        f"data-parallel)" if batch % dp == 0 and accum_given else "")
            out.append(Problem(
                key, f"batch_size {batch} is not divisible by grad_accum {accum} x data-parallel "
                f"{dp} = {accum * dp}",
                f"set batch_size = {_multiples_near(batch, accum * dp)}{per_rank}"))
            return None
        micro = batch // (accum * dp)
    return Layout(world_size, dp, stages, batch, micro, accum, tensor)


def resolve_layout(train: TrainSpec, parallel: ParallelSpec, world_size: int) -> Layout:
    """The batch split for this world size; raises ParallelConfigError when it has none."""
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world size must be a positive integer, got {world_size!r}")
    problems: list[Problem] = []
    layout = _layout_problems(train, parallel, world_size, problems)
    if layout is None:
        raise ParallelConfigError(problems)
    return layout



def _partition_ok(part: str) -> bool:
    import re

    if part in ("parameters", "uniform"):
        return True
    if not part.startswith("type:"):
        return False
    try:
        re.compile(part[5:])
    except re.error:
        return False
    return True


def check_parallel(train: TrainSpec, parallel: ParallelSpec, world_size: int) -> list[Problem]:
    """Every inconsistency of train + parallel at this world size, errors and warnings, in a
    fixed order. Includes `check_train`'s problems."""
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world size must be a positive integer, got {world_size!r}")
    out = check_train(train, parallel)
    layout = _layout_problems(train, parallel, world_size, out)
    zero, stages = parallel.zero, parallel.pipeline_stages
    given = parallel.model_fields_set

    # ZeRO and offload (deepspeed/runtime/pipe/engine.py, zero/offload_config.py)
    if stages > 1 and zero >= 2:
        out.append(Problem("zero", f"zero {zero} cannot be combined with pipeline_stages "
                           f"{stages}: DeepSpeed's pipeline engine refuses ZeRO-2 and ZeRO-3",
                           "set zero = 1 (or 0), or pipeline_stages = 1"))
    deepspeed = parallel.engine == "deepspeed"  # engine ddp: ddp_problems says what it refuses
    if deepspeed and parallel.offload_param != "none" and zero != 3:
        out.append(Problem("offload_param", f"offload_param {parallel.offload_param} needs zero 3, "
                           f"but zero is {zero}",
                           "set zero = 3, or offload_param = none (only ZeRO-3 partitions "
                           "parameters; other stages would ignore the setting)"))
    if deepspeed and parallel.offload_optimizer != "none" and zero == 0:
        out.append(Problem("offload_optimizer", f"offload_optimizer {parallel.offload_optimizer} "
                           "needs zero 1, 2 or 3, but zero is 0",
                           "set zero = 1 or higher, or offload_optimizer = none"))
    nvme_keys = [k for k in ("offload_optimizer", "offload_param")
                 if getattr(parallel, k) == "nvme"]
    if parallel.nvme_path is None:
        for k in nvme_keys:
            out.append(Problem(k, f"{k} nvme needs nvme_path", "set nvme_path = \"/path/to/nvme\" "
                               "(a folder on a fast local disk, the same on every machine)"))
    elif not nvme_keys:
        out.append(Problem("nvme_path", "nvme_path is set but nothing is offloaded to nvme",
                           "set offload_optimizer or offload_param to nvme, or remove nvme_path",
                           "warning"))

    # pipeline placement
    if stages == 1:
        if parallel.stage_boundaries:
            out.append(Problem("stage_boundaries", "stage_boundaries needs pipeline_stages > 1",
                               f"set pipeline_stages = {len(parallel.stage_boundaries) + 1}, or "
                               "remove stage_boundaries"))
        if "partition" in given and _partition_ok(parallel.partition):
            out.append(Problem("partition", "partition has no effect with pipeline_stages 1",
                               "remove partition, or set pipeline_stages > 1", "warning"))
    else:
        if parallel.stage_boundaries and len(parallel.stage_boundaries) != stages - 1:
            n = len(parallel.stage_boundaries)
            out.append(Problem(
                "stage_boundaries", f"stage_boundaries names {n} layer{'s' if n != 1 else ''}, but "
                f"pipeline_stages {stages} needs {stages - 1} (the first layer of each stage after "
                "the first)", f"name {stages - 1} layer{'s' if stages > 2 else ''}, or set "
                f"pipeline_stages = {n + 1}"))
        if parallel.stage_boundaries and "partition" in given:
            out.append(Problem("partition", "partition and stage_boundaries both place the "
                               "pipeline stages", "keep one of them"))
    part = parallel.partition
    if part not in ("parameters", "uniform") and not part.startswith("type:"):
        out.append(Problem("partition", f"unknown partition `{part}`",
                           "use parameters, uniform or type:REGEX"))
    elif part.startswith("type:"):
        import re

        try:
            re.compile(part[5:])
        except re.error as e:
            out.append(Problem("partition", f"partition {part}: bad regular expression ({e})",
                               None))
    if stages > 1 and layout is not None and layout.grad_accum < stages:
        out.append(Problem(
            "grad_accum", f"grad_accum {layout.grad_accum} < pipeline_stages {stages}: each step "
            f"has fewer micro-batches than stages, so stages sit idle",
            f"use grad_accum >= {stages} (a smaller micro_batch)", "warning"))

    # precision and communication
    if parallel.precision == "fp16":
        out.append(Problem("precision", "precision fp16 needs GPUs: DeepSpeed's CPU accelerator "
                           "refuses fp16 training (\"Type fp16 is not supported on your device\")",
                           "use precision bf16 to train on CPUs", "warning"))
    dp = layout.data_parallel if layout is not None else _data_parallel(parallel, world_size)
    comm, prec = parallel.comm_dtype, parallel.precision
    if comm != "fp32" and deepspeed:
        if dp == 1:
            out.append(Problem("comm_dtype", f"comm_dtype {comm} has no effect: the data-parallel "
                               "degree is 1, so no gradients are all-reduced",
                               "remove comm_dtype, or train with more data-parallel ranks",
                               "warning"))
        if {comm, prec} == {"fp16", "bf16"}:
            why = ("bf16 gradients outside fp16's range (about 6e-8 to 65504) flush to zero or "
                   "overflow, and bf16 training has no loss scaling to prevent it"
                   if comm == "fp16" else
                   "bf16 keeps 8 bits of mantissa to fp16's 11, so the all-reduce rounds the "
                   "gradients more coarsely than they were computed")
            out.append(Problem("comm_dtype", f"comm_dtype {comm} with precision {prec}: {why}",
                               f"use comm_dtype {prec} or fp32", "warning"))
    if deepspeed and zero and dp == 1 and parallel.offload_optimizer == "none" and \
            parallel.offload_param == "none":
        out.append(Problem("zero", f"zero {zero} partitions nothing: the data-parallel degree is 1",
                           "train with more data-parallel ranks, offload to cpu, or set zero = 0",
                           "warning"))
    return out + ddp_problems(train, parallel, dp)
