"""Evaluate one parallel configuration of a spec on a cluster: memory per GPU and per machine,
FLOPs per step, an estimated step time, and whether it fits.

Step time = compute (FLOPs / (peak x efficiency), stretched by the pipeline bubble
(stages - 1) / (micro-batches + stages - 1)) + data-parallel communication + the optimizer step
(+ offload traffic). Nothing is assumed to overlap, so the estimate is on the slow side.

Communication volume per GPU follows the ZeRO paper: 2x the parameters for ZeRO 0-2 (an
all-reduce, or a reduce-scatter and an all-gather), 3x for ZeRO-3 (two all-gathers and a
reduce-scatter), times (D - 1) / D for a ring over D ranks; ZeRO-2 reduce-scatters and ZeRO-3
gathers on every micro-batch, so their share grows with gradient accumulation. Links: inside a
machine while the data-parallel group fits in one, else the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

from nnspec.lang.config import ParallelSpec, TrainSpec
from nnspec.plan.costs import ModelCosts, UnitCost, model_costs, recomputed_flops, regions
from nnspec.plan.memory import (
    PRECISION_BYTES, construction_bytes, model_states, optimizer_state_bytes, per_node_cpu_bytes,
    temporary_buffers
)
from nnspec.place.tensor import TensorPlan, tensor_plan
from nnspec.plan.profiles import Profile
from nnspec.plan.tensor_costs import comm_seconds, communication, largest_layer, split_units


@dataclass(frozen=True)
class Cluster:
    """The machines a plan is for."""

    gpus_per_node: int
    nodes: int = 1
    gpu_memory: int = 80 * 10 ** 9        # bytes per GPU
    cpu_memory: Optional[int] = None      # bytes per machine; None: not checked

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True)
class Choice:
    """The settings a plan chooses (the rest of the parallel section stays as written)."""

    zero: int
    offload_optimizer: str
    offload_param: str
    pipeline_stages: int
    micro_batch: int
    grad_accum: int
    activation_checkpointing: tuple[str, ...]
    tensor: int = 1                       # tensor-parallel degree (ranks splitting each layer)

    @classmethod
    def of(cls, parallel: ParallelSpec, micro_batch: int, grad_accum: int) -> "Choice":
        return cls(parallel.zero, parallel.offload_optimizer, parallel.offload_param,
                   parallel.pipeline_stages, micro_batch, grad_accum,
                   tuple(parallel.activation_checkpointing), parallel.tensor)


class PlanError(ValueError):
    """A configuration that cannot be evaluated (e.g. no pipeline cut for that many stages)."""


@dataclass
class Model:
    """What the planner knows of a spec: its IR's costs and its train/parallel sections."""

    ir: object
    train: TrainSpec
    parallel: ParallelSpec
    _stages: dict = field(default_factory=dict)
    _tensor: dict = field(default_factory=dict)

    @cached_property
    def costs(self) -> ModelCosts:
        return model_costs(self.ir)

    @property
    def precision(self) -> str:
        return self.parallel.precision

    @cached_property
    def optimizer_bytes(self) -> int:
        return optimizer_state_bytes(self.train.optimizer.name, self.train.optimizer.kwargs)[0]

    def tensor_plan(self, n: int) -> TensorPlan:
        """How tensor = n splits the model (nnspec.place.tensor)."""
        if n not in self._tensor:
            self._tensor[n] = tensor_plan(self.ir, n)
        return self._tensor[n]

    def stages(self, n: int, tensor: int = 1) -> list[tuple[int, list[UnitCost]]]:
        """(parameters, units) of each of n pipeline stages, as nnspec.place.partition places them;
        with tensor > 1 (one stage only), what one rank of a tensor-parallel group holds."""
        if tensor > 1:
            plan = self.tensor_plan(tensor)
            units = split_units(self.costs.units, plan, largest_layer(self.ir, plan))
            return [(plan.per_rank_params(self.costs.params), list(units))]
        if n not in self._stages:
            units = list(self.costs.units)
            if n == 1:
                self._stages[n] = [(self.costs.params, units)]
            else:
                from nnspec.place.partition import PipelineError, partition

                try:
                    part = partition(self.ir, self.parallel.model_copy(
                        update={"pipeline_stages": n, "stage_boundaries": ()}
                        if len(self.parallel.stage_boundaries) != n - 1 else
                        {"pipeline_stages": n}))
                except PipelineError as err:
                    self._stages[n] = PlanError(err.message)
                else:
                    self._stages[n] = [(part.stage_params(s),
                                        units[part.bounds[s]:part.bounds[s + 1]])
                                       for s in range(part.stages)]
        found = self._stages[n]
        if isinstance(found, PlanError):
            raise found
        return found


def _check_tensor(model: Model, choice: Choice, world: int) -> None:
    stages, tp = choice.pipeline_stages, choice.tensor
    if world % stages:
        raise PlanError(f"pipeline_stages {stages} does not divide {world} GPUs")
    if tp > 1:
        if stages > 1:
            raise PlanError("tensor parallelism cannot be combined with pipeline stages")
        if choice.zero == 3:
            raise PlanError("tensor parallelism cannot be combined with ZeRO-3")
        if world % tp:
            raise PlanError(f"tensor {tp} does not divide {world} GPUs")
        for why in model.tensor_plan(tp).indivisible.values():
            raise PlanError(why)


def evaluate(model: Model, choice: Choice, cluster: Cluster, profile: Profile) -> dict:
    """The plan of one configuration, as the JSON-ready dict `nnspec plan --json` prints."""
    world, stages, tp = cluster.world_size, choice.pipeline_stages, choice.tensor
    _check_tensor(model, choice, world)
    dp = world // (stages * tp)
    c = PRECISION_BYTES[model.precision]
    costs = model.costs
    per_stage = []
    for s, (params, units) in enumerate(model.stages(stages, tp)):
        largest = max((u.largest_layer for u in units), default=0)
        states = model_states(params, largest, zero=choice.zero, data_parallel=dp,
                              precision=model.precision, optimizer_bytes=model.optimizer_bytes,
                              offload_optimizer=choice.offload_optimizer,
                              offload_param=choice.offload_param)
        in_flight = min(stages - s, choice.grad_accum)  # 1F1B: stage s holds stages - s
        acts = activation_bytes(units, choice.activation_checkpointing, c, choice.micro_batch,
                                in_flight)
        if s == 0:
            acts += choice.micro_batch * (costs.input_float * c + costs.input_other_bytes)
        buffers = temporary_buffers(params, largest, zero=choice.zero, data_parallel=dp,
                                    precision=model.precision,
                                    offload_optimizer=choice.offload_optimizer)
        buffers += int(profile.reserved_gb * 1e9)
        if s == stages - 1:
            # the loss works on fp32 logits and their gradient
            buffers += 2 * 4 * costs.largest_output * choice.micro_batch
        gpu = {"params": states.params, "grads": states.grads, "optimizer": states.optimizer,
               "activations": acts, "buffers": buffers}
        gpu["total"] = sum(gpu.values())
        # ZeRO-3 constructs inside zero.Init; a pipeline rank materializes only its stage; AutoTP
        # splits a model that each rank has built whole
        built = costs.params if tp > 1 else params
        cpu = per_node_cpu_bytes(states, params=built, largest_layer=largest,
                                 gpus_per_node=cluster.gpus_per_node, zero_init=choice.zero == 3)
        earlier = [u.largest_layer for _, us in model.stages(stages)[:s] for u in us]
        build = construction_bytes(built, largest, zero=choice.zero, data_parallel=dp,
                                   precision=model.precision, released=max(earlier, default=0))
        per_stage.append({"stage": s, "params": params, "per_gpu_bytes": gpu,
                          "per_cpu_bytes": cpu, "construct_bytes_per_rank": build,
                          "units": [u.label for u in units[:1]] +
                          ([u.label for u in units[-1:]] if len(units) > 1 else []),
                          "_states": states, "_units": units})
    worst = max(per_stage, key=lambda st: st["per_gpu_bytes"]["total"])
    cpu = max(st["per_cpu_bytes"] for st in per_stage)
    nvme = 0
    if "nvme" in (choice.offload_optimizer, choice.offload_param):
        nvme = worst["_states"].offloaded * cluster.gpus_per_node
        cpu = per_node_cpu_bytes(type(worst["_states"])(0, 0, 0), params=worst["params"],
                                 largest_layer=0, gpus_per_node=cluster.gpus_per_node)
    tensor_comm = None
    if tp > 1:
        tensor_comm = communication(model.tensor_plan(tp), costs.units,
                                    choice.activation_checkpointing, c)
        tensor_comm["bytes_per_step"] = (tensor_comm["bytes_per_sample"] * choice.micro_batch
                                         * choice.grad_accum)
    timing = step_time(model, choice, cluster, profile, per_stage, dp, tensor_comm)
    fwd = costs.flops
    recompute = recomputed_flops(costs.units, choice.activation_checkpointing)
    global_batch = choice.micro_batch * choice.grad_accum * dp
    total = worst["per_gpu_bytes"]["total"]
    headroom = cluster.gpu_memory - total
    reasons = []
    fits = headroom >= 0
    if not fits:
        reasons.append(f"needs {gib(total)} per GPU, {gib(-headroom)} over {gib(cluster.gpu_memory)}"
                       f" ({_biggest(worst['per_gpu_bytes'])})")
    if cluster.cpu_memory is not None and cpu > cluster.cpu_memory:
        fits = False
        reasons.append(f"needs {gib(cpu)} of CPU memory per machine, {gib(cpu - cluster.cpu_memory)}"
                       f" over {gib(cluster.cpu_memory)}")
    if fits:
        reasons.append(f"fits with {gib(headroom)} to spare per GPU")
    out = {
        "zero_stage": choice.zero,
        "offload_optimizer": choice.offload_optimizer,
        "offload_param": choice.offload_param,
        "pipeline_stages": stages,
        "tensor_parallel": tp,
        "data_parallel": dp,
        "micro_batch": choice.micro_batch,
        "grad_accum": choice.grad_accum,
        "global_batch": global_batch,
        "activation_checkpointing": list(choice.activation_checkpointing),
        "precision": model.precision,
        "per_gpu_bytes": dict(worst["per_gpu_bytes"]),
        "per_cpu_bytes": cpu,
        "construct_bytes_per_rank": max(st["construct_bytes_per_rank"] for st in per_stage),
        "per_nvme_bytes": nvme,
        "step_flops": global_batch * (3 * fwd + recompute),
        "est_step_seconds": timing["total"],
        "time": timing,
        "fits": fits,
        "headroom_bytes": headroom,
        "shortfall_bytes": max(0, -headroom),
        "reasons": reasons,
    }
    if tensor_comm is not None:
        out["tensor_comm"] = tensor_comm
    if stages > 1:
        out["stages"] = [{k: v for k, v in st.items() if not k.startswith("_")}
                         for st in per_stage]
    return out


def activation_bytes(units: list[UnitCost], patterns: tuple[str, ...], c: int, micro_batch: int,
                     in_flight: int = 1) -> int:
    """Activations one GPU keeps for backward: every unit's outputs, except that a checkpointed
    module keeps only its inputs, and one checkpointed module at a time is recomputed in full."""
    kept = recompute = 0
    for key, group in regions(units, patterns):
        if key is None:
            kept += group[0].act_bytes(c)
        else:
            kept += group[0].in_bytes(c)
            recompute = max(recompute, sum(u.act_bytes(c) for u in group))
    return micro_batch * (in_flight * kept + recompute)


def step_time(model: Model, choice: Choice, cluster: Cluster, profile: Profile, per_stage: list,
              dp: int, tensor_comm: dict | None = None) -> dict:
    """Seconds per optimizer step, with its parts."""
    c = PRECISION_BYTES[model.precision]
    stages, accum, micro = choice.pipeline_stages, choice.grad_accum, choice.micro_batch
    rate = profile.peak(model.precision) * profile.efficiency
    per_sample = [sum(3 * u.flops for u in st["_units"])
                  + recomputed_flops(st["_units"], choice.activation_checkpointing)
                  for st in per_stage]
    t_micro = max(per_sample) * micro / rate
    compute = t_micro * accum
    bubble = (stages - 1) / (accum + stages - 1)
    compute_total = t_micro * (accum + stages - 1)
    # DeepSpeed's topology puts data-parallel ranks next to each other: a group stays inside a
    # machine while it has no more ranks than the machine has GPUs
    in_node = cluster.nodes == 1 or dp * choice.tensor <= cluster.gpus_per_node
    bw = 1e9 * (profile.intra_node_gbs if in_node else profile.inter_node_gbs)
    params = max(st["params"] for st in per_stage)
    g = PRECISION_BYTES[model.parallel.comm_dtype]
    ring = (dp - 1) / dp
    if dp == 1:
        volume = 0.0
    elif choice.zero <= 1:
        volume = 2 * params * g
    elif choice.zero == 2:
        volume = accum * params * g + params * c
    else:
        volume = accum * (2 * params * c + params * g)
    comm = ring * volume / bw
    # tensor parallelism: all-reduces of activations inside the machine, every micro-batch
    tp_comm = comm_seconds(tensor_comm["bytes_per_step"], choice.tensor, profile.intra_node_gbs) \
        if tensor_comm else 0.0
    # pipeline: each micro-batch sends its boundary activation forward and its gradient back
    p2p = 0.0
    if stages > 1:
        boundary = max(st["_units"][-1].act_bytes(c) for st in per_stage[:-1])
        link = 1e9 * (profile.intra_node_gbs if cluster.nodes == 1 or dp < cluster.gpus_per_node
                      else profile.inter_node_gbs)
        p2p = accum * 2 * boundary * micro / link
    part = -(-params // dp) if choice.zero else params
    k = model.optimizer_bytes
    optimizer = offload = 0.0
    if choice.offload_optimizer == "none":
        optimizer = 2 * part * (c + 4 + 4 + k) / (1e9 * profile.memory_bandwidth_gbs)
    else:
        optimizer = part / (1e9 * profile.cpu_optimizer_gparams_per_s)
        offload = part * (4 + c) / (1e9 * profile.host_link_gbs)  # grads down, weights up
        if choice.offload_optimizer == "nvme":
            offload += 2 * part * (4 + k) / (1e9 * profile.nvme_gbs)
    if choice.offload_param != "none":
        link = profile.nvme_gbs if choice.offload_param == "nvme" else profile.host_link_gbs
        offload += accum * 2 * part * c / (1e9 * link)
    total = compute_total + comm + p2p + tp_comm + optimizer + offload
    return {"total": total, "compute": compute, "bubble_fraction": bubble,
            "bubble": compute_total - compute, "comm": comm + p2p + tp_comm,
            "tensor_comm": tp_comm, "optimizer": optimizer, "offload": offload}


def gib(n: float) -> str:
    """Bytes as GiB (or MiB below 1 GiB), for reports."""
    n = float(n)
    if abs(n) >= 2 ** 30:
        return f"{n / 2 ** 30:.1f} GiB"
    return f"{n / 2 ** 20:.1f} MiB"


def _biggest(gpu: dict) -> str:
    parts = sorted(((v, k) for k, v in gpu.items() if k != "total"), reverse=True)[:2]
    return ", ".join(f"{k} {gib(v)}" for v, k in parts)
