"""Model-state memory: what each GPU (and each machine's CPU) holds for parameters, gradients and
optimizer states under ZeRO 0-3, offload and a data-parallel degree, from a parameter count alone.

The accounting is DeepSpeed's own (0.19), extended by the same rules to the stages, precisions and
optimizers its estimators leave out. With P parameters, D data-parallel ranks, c bytes per
parameter in the training precision (2 for bf16/fp16, 4 for fp32) and k bytes of optimizer state
per parameter (Adam 8: two fp32 moments; SGD with momentum 4; plain SGD 0):

==========  ===========  ============================  =====================
ZeRO stage  params       grads                         optimizer
==========  ===========  ============================  =====================
0           c P          c P  (+ 4 P mixed)            (4 P mixed) + k P
1           c P          max(c P, (c + 4) P / D)       (4 + k) P / D
2           c P          (c + 4) P / D                 (4 + k) P / D
3           c P / D      4 P / D                       (4 + k) P / D
==========  ===========  ============================  =====================

* Gradients are the largest set alive at once. Before its optimizer step, ZeRO-1/2 flatten the
  reduced gradient partition (c P / D) into an fp32 copy (4 P / D) and hold both for a moment
  (stage_1_and_2.py `single_partition_of_fp32_groups[i].grad`, then `averaged_gradients[i] =
  None`); ZeRO-1 holds the whole c P of gradients during backward, until it reduces them at the
  accumulation boundary. ZeRO 0 in mixed precision flattens the 16-bit gradients into fp32 beside
  them.
* The master copy (the "4" in "4 + k") is kept whenever ZeRO is on (DeepSpeed clones the fp32
  partition even when training in fp32) or the precision is mixed; ZeRO 0 in fp32 steps
  torch.optim directly on the weights.
* ZeRO-3 also gathers one layer at a time: c bytes of parameters and c of gradients for the
  largest layer (DeepSpeed's `largest_layer_memory = 4 * largest_layer_params` for 16-bit). Its
  fp32 gradient partition (`_prepare_fp32_grad_for_sub_group`) is counted in grads; stage3.py's
  flat c-byte gradient partition (`grad_partitions_flat_buffer`), which DeepSpeed's estimator
  leaves out, is counted under `buffers` (see `temporary_buffers`).

For mixed-precision Adam this gives 2 + 18/D bytes per parameter per GPU at ZeRO-2 and
18/D + 4 L at ZeRO-3, DeepSpeed's `estimate_zero2_model_states_mem_needs` and
`estimate_zero3_model_states_mem_needs` exactly. Offload moves the optimizer (master weights,
states and their fp32 gradients) and, at ZeRO-3, the parameters to the CPU (or NVMe); DeepSpeed's
estimators count the CPU per machine, including the fp32 model each local process builds before
`deepspeed.initialize`, times `additional_buffer_factor` (1.5): `per_node_cpu_bytes` does the
same. nnspec builds a ZeRO-3 model inside zero.Init (only the largest layer is whole at once, as
DeepSpeed's `zero_init=True`) and a pipeline rank materializes only its stage, so that model is
the stage's; `construction_bytes` is what one rank allocates to construct it.
"""
from __future__ import annotations

from dataclasses import dataclass

from nnspec.emit.deepspeed import zero3_limits

# DeepSpeed's default for its estimators' CPU figures (stage_1_and_2.py / stage3.py)
ADDITIONAL_BUFFER_FACTOR = 1.5
# DeepSpeed 0.19 zero_optimization defaults (zero/config.py)
REDUCE_BUCKET_SIZE = 500_000_000
ALLREDUCE_BUCKET_SIZE = 500_000_000
SUB_GROUP_SIZE = 1_000_000_000

PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def optimizer_state_bytes(name: str, kwargs: dict) -> tuple[int, str]:
    """(fp32 bytes of state per parameter, why) for a spec's optimizer."""
    n = name.lower()
    if n in ("adam", "adamw"):
        amsgrad = bool(kwargs.get("amsgrad", False))
        return (12, "exp_avg, exp_avg_sq and max_exp_avg_sq") if amsgrad else \
            (8, "exp_avg and exp_avg_sq")
    if n == "sgd":
        return (4, "momentum buffer") if kwargs.get("momentum", 0) else (0, "no state")
    if n == "rmsprop":
        k = 4 + (4 if kwargs.get("momentum", 0) else 0) + (4 if kwargs.get("centered") else 0)
        return k, "square_avg (+ momentum buffer, grad_avg)"
    table = {"adagrad": (4, "sum"), "adadelta": (8, "square_avg and acc_delta"),
             "adamax": (8, "exp_avg and exp_inf"), "nadam": (8, "exp_avg and exp_avg_sq"),
             "radam": (8, "exp_avg and exp_avg_sq"), "asgd": (4, "ax"),
             "rprop": (8, "prev and step_size")}
    if n in table:
        return table[n]
    return 8, "not known; assumed like Adam"


@dataclass(frozen=True)
class States:
    """Bytes of model states one rank holds, by place; `*_offloaded` live on the CPU or NVMe."""

    params: int
    grads: int
    optimizer: int
    params_offloaded: int = 0
    grads_offloaded: int = 0
    optimizer_offloaded: int = 0

    @property
    def gpu(self) -> int:
        return self.params + self.grads + self.optimizer

    @property
    def offloaded(self) -> int:
        return self.params_offloaded + self.grads_offloaded + self.optimizer_offloaded


def model_states(params: int, largest_layer: int, *, zero: int, data_parallel: int,
                 precision: str, optimizer_bytes: int, offload_optimizer: str = "none",
                 offload_param: str = "none") -> States:
    """Per-rank model states for `params` parameters (one pipeline stage's, or the model's)."""
    c, k, d = PRECISION_BYTES[precision], optimizer_bytes, data_parallel
    mixed = c != 4
    if zero == 0:
        p, g = c * params, c * params + (4 * params if mixed else 0)
        o = (4 * params if mixed else 0) + k * params
    else:
        part = _ceil(params, d)
        o = (4 + k) * part
        if zero == 1:
            p, g = c * params, max(c * params, (c + 4) * part)
        elif zero == 2:
            p, g = c * params, (c + 4) * part
        else:
            p, g = c * part + c * largest_layer, 4 * part + c * largest_layer
    po = go = oo = 0
    if offload_optimizer != "none" and zero >= 1:
        # the fp32 gradient partition, master weights and states move; ZeRO-1/2 keep their 16-bit
        # gradients (full at stage 1), ZeRO-3 only the gathered layer's
        fp32_grads = 4 * _ceil(params, d)
        go, oo, o = fp32_grads, o, 0
        if zero == 1:
            g = c * params
        elif zero == 2:
            g = 0  # reduced straight into the pinned CPU partition
        else:
            g -= fp32_grads
    if offload_param != "none" and zero == 3:
        po = c * _ceil(params, d)
        p -= po
    return States(p, g, o, po, go, oo)


def per_node_cpu_bytes(states: States, *, params: int, largest_layer: int, gpus_per_node: int,
                       zero_init: bool = False,
                       buffer_factor: float = ADDITIONAL_BUFFER_FACTOR) -> int:
    """CPU memory of one machine, as DeepSpeed's estimators count it: the larger of the fp32 model
    every local process builds before initialize (only its largest layer under zero.Init) and the
    offloaded states of its local ranks, times the buffer factor."""
    build = 4 * (largest_layer if zero_init else params) * gpus_per_node
    offloaded = states.offloaded * gpus_per_node
    if zero_init and offloaded:
        return int(offloaded * buffer_factor)
    return int(max(build, offloaded) * buffer_factor)


def construction_bytes(params: int, largest_layer: int, *, zero: int, data_parallel: int,
                       precision: str, released: int = 0) -> int:
    """Bytes one rank allocates while it constructs its model (nnspec/train/construct.py).
    ZeRO-3 constructs inside zero.Init, which partitions each module, cast to the training
    precision, when its constructor returns: the shard of the rest of the model, plus the
    largest layer whole in fp32 beside its cast copy (or, in fp32, beside its shard).
    Otherwise the model is built in fp32, as `build()` draws it: the whole model, or in a
    pipeline the stage's `params`, or `released`, the largest layer of an earlier stage if it is
    larger: each is made (to draw the same random numbers) and released before the stage's own
    layers exist; the layers after the stage are made on the meta device."""
    if zero == 3:
        c = PRECISION_BYTES[precision]
        beside = c * largest_layer if c != 4 else 4 * _ceil(largest_layer, data_parallel)
        return c * _ceil(params - largest_layer, data_parallel) + 4 * largest_layer + beside
    return 4 * max(params, released)


def temporary_buffers(params: int, largest_layer: int, *, zero: int, data_parallel: int,
                      precision: str, offload_optimizer: str = "none") -> int:
    """Communication buckets and step-time copies beside the model states, per GPU. ZeRO 0-2:
    DeepSpeed 0.19's defaults, reduce and all-reduce buckets of 5e8 elements. ZeRO-3: the
    reduce bucket and the prefetched layer that the emitted config sizes to the largest layer
    (emit.deepspeed.zero3_limits; the gathered layer itself is in model_states), and its 16-bit
    gradient partition."""
    c = PRECISION_BYTES[precision]
    if zero == 0:
        return c * min(params, ALLREDUCE_BUCKET_SIZE)
    if zero in (1, 2):
        # contiguous_gradients (on by default) allocates the whole bucket up front
        return c * REDUCE_BUCKET_SIZE if zero == 2 else c * min(params, REDUCE_BUCKET_SIZE)
    limits = zero3_limits(largest_layer)
    grad_partition = 0 if offload_optimizer != "none" else c * _ceil(params, data_parallel)
    return c * (limits["reduce_bucket_size"] + limits["stage3_prefetch_bucket_size"]) + \
        grad_partition


def _ceil(a: int, b: int) -> int:
    return -(-a // b)
