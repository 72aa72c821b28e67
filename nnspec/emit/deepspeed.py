"""Emit the DeepSpeed config (`ds_config.json`) for a spec's `train` and `parallel` sections.

The config is written for one world size: DeepSpeed asserts train_batch_size ==
train_micro_batch_size_per_gpu x gradient_accumulation_steps x data-parallel degree, so a run on
another number of processes needs the config emitted again for it (`nnspec train` can do that
from the WORLD_SIZE the launcher sets).

Only keys that DeepSpeed 0.19 reads are emitted; `DEEPSPEED_KEYS` lists them with the place in
DeepSpeed's source that reads each, and `check_keys` (run on every emitted config) refuses
anything else. DeepSpeed's own DeepSpeedConfig accepts unknown top-level keys silently, so this
is the only strict check a config gets before `deepspeed.initialize`.

What stays outside the JSON, for the training client:

* Optimizers other than adam, adamw, sgd and adagrad: `client_optimizer(train)` names the
  torch.optim class and its arguments; build it on the model's parameters and pass it as
  `deepspeed.initialize(optimizer=...)`. The config then carries `zero_allow_untested_optimizer`
  (ZeRO only accepts Adam, AdamW and Adagrad silently) and, with offload_optimizer,
  `zero_force_ds_cpu_optimizer: false` (else DeepSpeed refuses a client optimizer under offload).
* The reduce_on_plateau schedule: `client_scheduler(train)` gives torch's ReduceLROnPlateau and
  its arguments. Build it on `engine.optimizer` after initialize and call `step(metric)` after
  each evaluation; do NOT pass it to initialize, whose engine would call `step()` without a metric
  on every optimizer step.
* Pipeline placement: the number of stages and the partition method are PipelineModule
  arguments (`num_stages`, `partition_method`), not config keys; DeepSpeed 0.19 ignores
  "stages", "partition" and "seed_layers" in its "pipeline" block.
* Activation checkpointing of the named blocks. Without a pipeline, the "activation_checkpointing"
  block is read only by `deepspeed.checkpointing.configure(None, deepspeed_config=cfg)`, which
  the client calls once the process group exists (it checks the batch sizes against the world
  size); it then wraps the matching blocks in `deepspeed.checkpointing.checkpoint`. In a pipeline the config's "pipeline" block turns on
  DeepSpeed's own layer-by-layer checkpointing, and the client limits it with
  `PipelineModule(checkpointable_layers=[class names of the matching top-level layers])`
  (without that list every layer with parameters is checkpointed). There the client must not
  call configure: DeepSpeed 0.19.8's configure cannot take the pipeline's grid as mpu
  (PipelineParallelGrid has no get_tensor_model_parallel_group), and without it its batch check
  counts every process as data-parallel; so no "activation_checkpointing" block is emitted then.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from nnspec.lang.config.optim_table import DEEPSPEED_SCHEDULERS
from nnspec.lang.config import (
    JSON_OPTIMIZERS, Layout, ParallelConfigError, ParallelSpec, Problem, TrainSpec, _plain,
    check_parallel, check_train, optimizer_class_name, optimizer_lr, resolve_layout,
    schedule_args, total_steps_for
)

__all__ = ["emit_deepspeed_config", "dumps", "check_parallel", "check_train", "check_keys",
           "client_optimizer", "client_scheduler", "Problem", "ParallelConfigError", "Layout",
           "resolve_layout", "total_steps_for", "DEEPSPEED_KEYS", "STAGE3_ONLY_KEYS",
           "DEFAULT_STEPS_PER_PRINT", "zero3_limits"]

DEFAULT_STEPS_PER_PRINT = 100

# Optimizers ZeRO accepts without "zero_allow_untested_optimizer": the classes of
# deepspeed/runtime/zero/utils.py ZERO_SUPPORTED_OPTIMIZERS that a JSON type builds here
# (with torch_adam, Adam/AdamW are torch.optim.Adam/AdamW; Adagrad is torch.optim.Adagrad, or
# DeepSpeedCPUAdagrad under offload). torch.optim.SGD is not among them.
ZERO_TESTED = {"adam", "adamw", "adagrad"}

# Every key nnspec may emit, as DeepSpeed 0.19.8 reads it. A dict is a block whose keys are
# checked in turn; None is a leaf; FREE is a block DeepSpeed passes on as **kwargs (optimizer and
# scheduler params): the scheduler's are checked against its class's signature (optim_table),
# the optimizer's by check_train.
FREE = "free"
_OFFLOAD_PARAM = {"device": None, "nvme_path": None}  # zero/offload_config.py
_OFFLOAD_OPTIMIZER = {"device": None, "nvme_path": None}  # (DeepSpeedZeroOffload*Config)
DEEPSPEED_KEYS: dict[str, Any] = {
    # runtime/config.py DeepSpeedConfig._initialize_params, through get_scalar_param
    "train_batch_size": None,                   # get_train_batch_size
    "train_micro_batch_size_per_gpu": None,     # get_train_micro_batch_size_per_gpu
    "gradient_accumulation_steps": None,        # get_gradient_accumulation_steps
    "steps_per_print": None,                    # get_steps_per_print (default None: no log)
    "gradient_clipping": None,                  # get_gradient_clipping (default 1.0!)
    "communication_data_type": None,            # get_communication_data_type
    "zero_allow_untested_optimizer": None,      # get_zero_allow_untested_optimizer
    "zero_force_ds_cpu_optimizer": None,        # get_zero_force_ds_cpu_optimizer
    # get_optimizer_name / get_optimizer_params; engine._configure_basic_optimizer
    "optimizer": {"type": None, "params": FREE},
    # get_scheduler_name / get_scheduler_params; engine._scheduler_from_config
    "scheduler": {"type": None, "params": FREE},
    # zero/config.py DeepSpeedZeroConfig (pydantic, extra="forbid")
    "zero_optimization": {
        "stage": None,
        "offload_optimizer": _OFFLOAD_OPTIMIZER,
        "offload_param": _OFFLOAD_PARAM,
        "stage3_gather_16bit_weights_on_model_save": None,  # alias of gather_16bit_weights_...
        "reduce_bucket_size": None,
        "stage3_max_live_parameters": None,          # alias of max_live_parameters
        "stage3_max_reuse_distance": None,           # alias of max_reuse_distance
        "stage3_prefetch_bucket_size": None,         # alias of prefetch_bucket_size
        "stage3_param_persistence_threshold": None,  # alias of param_persistence_threshold
        "sub_group_size": None,
    },
    "bf16": {"enabled": None, "immediate_grad_update": None},  # precision_config.py
                                                # DeepSpeedBF16Config
    "fp16": {"enabled": None},                  # precision_config.py DeepSpeedFP16Config
    # runtime/config.py get_pipeline_config; read in pipe/engine.py PipelineEngine.__init__
    "pipeline": {"activation_checkpoint_interval": None, "use_reentrant": None},
    # activation_checkpointing/config.py, read by deepspeed.checkpointing.configure
    "activation_checkpointing": {
        "partition_activations": None, "cpu_checkpointing": None,
        "contiguous_memory_optimization": None,
    },
    # runtime/tensor_parallel/config.py TPTrainingConfig: AutoTP training; the training client
    # adds the compiler's split as "partition_config" (nnspec/train/tensor_parallel.py)
    "tensor_parallel": {"autotp_size": None, "partition_config": FREE},
}
# keys DeepSpeed reads only at ZeRO stage 3 (zero/stage3.py, parameter_offload.py)
STAGE3_ONLY_KEYS = ("offload_param", "stage3_gather_16bit_weights_on_model_save",
                    "stage3_max_live_parameters", "stage3_max_reuse_distance",
                    "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
                    "sub_group_size")

# DeepSpeed 0.19's defaults (zero/config.py DeepSpeedZeroConfig) and its minimum (reduce_bucket_size
# is Field(gt=0), the others ge=0)
ZERO3_DEFAULTS = {"stage3_max_live_parameters": 10 ** 9, "stage3_max_reuse_distance": 10 ** 9,
                  "stage3_prefetch_bucket_size": 5 * 10 ** 7,
                  "stage3_param_persistence_threshold": 10 ** 5, "reduce_bucket_size": 5 * 10 ** 8,
                  "sub_group_size": 10 ** 9}


def zero3_limits(largest_layer: int) -> dict[str, int]:
    """ZeRO-3's gather and bucket sizes, in parameters, for a model whose largest layer (the most
    parameters one module holds directly: what ZeRO-3 gathers at once) is `largest_layer`.

    DeepSpeed's defaults are sized for throughput, not for the model: a model under 1e9
    parameters stays gathered whole from each layer's forward to its backward (every layer is
    reused within max_reuse_distance 1e9, so none is released once the first step has traced
    the order), and the gradient bucket is a 5e8-element buffer. Scaled to the layer instead:

    * max_live_parameters = 2 x layer: the layer computing and the next one being prefetched;
    * prefetch_bucket_size = layer: prefetch one layer ahead;
    * max_reuse_distance = layer: a gathered layer stays only if it is used again within one
      layer's worth of parameters (the last forward layer, whose backward comes next);
    * reduce_bucket_size = layer: the gradient bucket holds one layer (each parameter fits, so
      contiguous_gradients copies every one into it);
    * param_persistence_threshold = layer / 100: parameters under 1% of the largest layer
      (biases, norms) stay whole on every rank, cheaper to keep than to gather;
    * sub_group_size = layer: the optimizer steps the rank's partition in pieces of about one
      layer, so the fp32 copy of the gradients it makes for a step and the optimizer's own
      temporaries (Adam's denominator) are one layer's, not the whole partition's.

    Each is at most DeepSpeed's default (never more than it would use) and at least its
    minimum. `nnspec plan` counts the same sizes (nnspec/plan/memory.py temporary_buffers).
    """
    layer = max(0, int(largest_layer))
    wanted = {"stage3_max_live_parameters": 2 * layer, "stage3_max_reuse_distance": layer,
              "stage3_prefetch_bucket_size": layer,
              "stage3_param_persistence_threshold": layer // 100, "reduce_bucket_size": layer,
              "sub_group_size": layer}
    limits = {k: min(v, ZERO3_DEFAULTS[k]) for k, v in wanted.items()}
    limits["reduce_bucket_size"] = max(1, limits["reduce_bucket_size"])
    return limits


def check_keys(cfg: dict, known: Optional[dict] = None, path: str = "") -> list[str]:
    """The dotted paths of keys in `cfg` that are not in the known-key set (empty when clean)."""
    known = DEEPSPEED_KEYS if known is None else known
    bad = []
    for key, value in cfg.items():
        where = f"{path}{key}"
        if key not in known:
            bad.append(where)
        elif isinstance(known[key], dict):
            if not isinstance(value, dict):
                bad.append(where)
            else:
                bad += check_keys(value, known[key], where + ".")
        elif known[key] is None and isinstance(value, dict):
            bad.append(where)
    if cfg.get("zero_optimization", {}).get("stage", 3) != 3 and path == "":
        zero = cfg["zero_optimization"]
        bad += [f"zero_optimization.{k}" for k in STAGE3_ONLY_KEYS if k in zero]
    if path == "" and isinstance(cfg.get("scheduler"), dict):
        bad += _scheduler_params(cfg["scheduler"])
    return bad


def _scheduler_params(block: dict) -> list[str]:
    """The scheduler's type and params that its DeepSpeed class does not take (read from the
    class's signature, stored in lang/config/optim_table.py)."""
    table = DEEPSPEED_SCHEDULERS.get(block.get("type"))
    if table is None:
        return ["scheduler.type"]
    taken = {name for name, _, _ in table} - {"optimizer"}
    return [f"scheduler.params.{k}" for k in block.get("params", {}) if k not in taken]


def client_optimizer(train: TrainSpec) -> Optional[tuple[str, dict]]:
    """(torch.optim class name, kwargs) when the client builds the optimizer, else None (the
    config's "optimizer" block builds it)."""
    if train.optimizer.name.lower() in JSON_OPTIMIZERS:
        return None
    return optimizer_class_name(train.optimizer.name), _plain(dict(train.optimizer.kwargs))


def client_scheduler(train: TrainSpec) -> Optional[tuple[str, dict]]:
    """(torch.optim.lr_scheduler class name, kwargs) when the client runs the schedule itself
    (reduce_on_plateau), else None."""
    if train.schedule.name != "reduce_on_plateau":
        return None
    args = schedule_args(train.schedule)
    return "ReduceLROnPlateau", {"factor": args["factor"], "patience": args["patience"]}


def _optimizer_block(train: TrainSpec) -> Optional[dict]:
    name = train.optimizer.name.lower()
    if name not in JSON_OPTIMIZERS:
        return None
    params = _plain(dict(train.optimizer.kwargs))
    if name in ("adam", "adamw"):
        # torch.optim.Adam/AdamW instead of DeepSpeed's C++ ops (no JIT build on CPUs)
        params["torch_adam"] = True
        # DeepSpeed's "Adam" type is AdamW (decoupled weight decay) unless told otherwise
        # (runtime/config.py ADAM_W_MODE_DEFAULT = True)
        params["adam_w_mode"] = name == "adamw"
    return {"type": JSON_OPTIMIZERS[name], "params": params}


def _scheduler_block(train: TrainSpec, total_steps: Optional[int]) -> Optional[dict]:
    sched = train.schedule
    if sched.name == "reduce_on_plateau":
        return None
    args = schedule_args(sched)
    lr = optimizer_lr(train.optimizer)
    if sched.name == "constant":
        if not args["warmup"]:
            return None
        return {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": lr, "warmup_num_steps": args["warmup"],
            "warmup_type": "linear"}}
    total = total_steps if total_steps is not None else train.steps
    if total is None:
        raise ValueError(f"schedule {sched.name} needs the total number of optimizer steps: set "
                         "train steps, or pass total_steps (see nnspec.lang.config.total_steps_for)")
    if args.get("warmup", 0) >= total:
        raise ValueError(f"schedule {sched.name}: warmup {args['warmup']} >= total steps {total}")
    if sched.name == "warmup_linear":
        # DeepSpeed warms up over at least 2 steps (WarmupLR: max(2, warmup_num_steps)), and its
        # warmup_num_steps must be positive
        return {"type": "WarmupDecayLR", "params": {
            "total_num_steps": total, "warmup_min_lr": 0.0, "warmup_max_lr": lr,
            "warmup_num_steps": max(1, args["warmup"]), "warmup_type": "linear"}}
    if sched.name == "warmup_cosine":
        return {"type": "WarmupCosineLR", "params": {
            "total_num_steps": total, "warmup_min_ratio": 0.0 if args["warmup"] else 1.0,
            "warmup_num_steps": max(1, args["warmup"]), "cos_min_ratio": float(args["min_ratio"]),
            "warmup_type": "linear"}}
    # one_cycle: rise from max_lr / div_factor to max_lr over pct_start of the steps, then back
    max_lr = float(args["max_lr"]) if args["max_lr"] is not None else lr
    up = min(max(1, round(total * args["pct_start"])), total)
    return {"type": "OneCycle", "params": {
        "cycle_min_lr": max_lr / args["div_factor"], "cycle_max_lr": max_lr,
        "cycle_first_step_size": up, "cycle_second_step_size": total - up,
        # DeepSpeed's momentum cycling overwrites Adam's betas with (momentum, 0.99) and is
        # skipped for SGD; nnspec's one_cycle cycles the lr only
        "cycle_momentum": False}}


def _offload(device: str, parallel: ParallelSpec) -> dict:
    block = {"device": device}
    if device == "nvme":
        block["nvme_path"] = parallel.nvme_path
    return block


def emit_deepspeed_config(train: TrainSpec, parallel: ParallelSpec, world_size: int, *,
                          total_steps: Optional[int] = None,
                          steps_per_print: Optional[int] = None,
                          largest_layer: Optional[int] = None) -> dict:
    """The DeepSpeed config for `world_size` processes.

    total_steps: optimizer steps of the whole run, needed by warmup_linear, warmup_cosine and
    one_cycle when train has no `steps` (epochs x steps per epoch; see total_steps_for).
    steps_per_print: how often DeepSpeed logs progress (default: train eval_every, else 100).
    largest_layer: parameters of the model's largest layer (nnspec.ir.largest_layer); at ZeRO-3
    the gather and bucket sizes are scaled to it (zero3_limits). None: DeepSpeed's defaults.
    Raises ParallelConfigError when check_parallel reports errors.

    With `tensor = N` the batch sizes count data-parallel ranks only, world_size / N of them
    (resolve_layout), as DeepSpeed does when it is given the tensor-parallel groups.
    """
    errors = [p for p in check_parallel(train, parallel, world_size) if p.severity == "error"]
    if errors:
        raise ParallelConfigError(errors)
    if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 1):
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    layout = resolve_layout(train, parallel, world_size)
    name = train.optimizer.name.lower()
    zero = parallel.zero

    cfg: dict[str, Any] = {
        "train_batch_size": layout.batch_size,
        "train_micro_batch_size_per_gpu": layout.micro_batch,
        "gradient_accumulation_steps": layout.grad_accum,
        "steps_per_print": steps_per_print or train.eval_every or DEFAULT_STEPS_PER_PRINT,
        # DeepSpeed clips at 1.0 unless told otherwise; 0.0 turns clipping off
        "gradient_clipping": float(train.clip_grad_norm or 0.0),
    }
    zero_block: dict[str, Any] = {"stage": zero}
    if parallel.offload_optimizer != "none":
        zero_block["offload_optimizer"] = _offload(parallel.offload_optimizer, parallel)
    if parallel.offload_param != "none":
        zero_block["offload_param"] = _offload(parallel.offload_param, parallel)
    if zero == 3:
        # lets engine.save_16bit_model() write one consolidated state dict
        zero_block["stage3_gather_16bit_weights_on_model_save"] = True
        if largest_layer is not None:
            zero_block.update(zero3_limits(largest_layer))
    cfg["zero_optimization"] = zero_block
    if parallel.precision == "bf16":
        cfg["bf16"] = {"enabled": True}
        if parallel.pipeline_stages > 1 and zero == 0:
            # DeepSpeed's BF16_Optimizer (what a bf16 pipeline without ZeRO gets) keeps each
            # 16-bit gradient until the optimizer step beside the copy it accumulated into;
            # immediate_grad_update accumulates it as autograd makes it and frees it (the same
            # sums), so the step does not hold every gradient twice
            cfg["bf16"]["immediate_grad_update"] = True
    elif parallel.precision == "fp16":
        cfg["fp16"] = {"enabled": True}   # dynamic loss scaling (DeepSpeed's default)

    optimizer = _optimizer_block(train)
    if optimizer is not None:
        cfg["optimizer"] = optimizer
    if zero and name not in ZERO_TESTED:
        cfg["zero_allow_untested_optimizer"] = True
    if optimizer is None and parallel.offload_optimizer != "none":
        cfg["zero_force_ds_cpu_optimizer"] = False
    scheduler = _scheduler_block(train, total_steps)
    if scheduler is not None:
        cfg["scheduler"] = scheduler

    # DeepSpeed all-reduces in the training precision unless told; emit only a difference
    default_comm = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}[parallel.precision]
    if parallel.comm_dtype != default_comm:
        cfg["communication_data_type"] = parallel.comm_dtype
    if parallel.pipeline_stages > 1 and parallel.activation_checkpointing:
        # In a pipeline DeepSpeed checkpoints layer by layer: interval 1 over the top-level
        # layers, limited to PipelineModule(checkpointable_layers=...) (the classes of the layers
        # the patterns match), with the non-reentrant function, which needs no requires_grad on
        # the first stage's inputs. The rest of the pipeline's placement (stages, partition) is
        # PipelineModule's arguments, and an interval of 0 here would be ignored
        # (pipe/engine.py only applies an interval > 0), so without checkpointing there is no
        # "pipeline" block.
        cfg["pipeline"] = {"activation_checkpoint_interval": 1, "use_reentrant": False}
    if parallel.activation_checkpointing and parallel.pipeline_stages == 1:
        # read by deepspeed.checkpointing.configure(None, deepspeed_config=cfg); under a pipeline
        # the "pipeline" block above does the work and configure cannot be called (see the
        # module docstring)
        cfg["activation_checkpointing"] = {
            "partition_activations": False,   # activations are not partitioned over tensor ranks
            "cpu_checkpointing": False,
            "contiguous_memory_optimization": False,
        }
    if parallel.tensor > 1:
        cfg["tensor_parallel"] = {"autotp_size": parallel.tensor}
    cfg = _sorted(cfg)
    bad = check_keys(cfg)
    if bad:  # a bug in this module, not in the spec
        raise AssertionError(f"emitted keys DeepSpeed does not read: {bad}")
    return cfg


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def dumps(cfg: dict) -> str:
    """The config as ds_config.json text: sorted keys, two-space indent, final newline."""
    return json.dumps(cfg, indent=2, sort_keys=True, allow_nan=False) + "\n"
