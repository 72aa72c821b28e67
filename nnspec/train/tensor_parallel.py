"""Tensor parallelism under the deepspeed runner (`parallel { tensor = N }`), on DeepSpeed's AutoTP.

The compiler decides the split from the IR (nnspec/place/tensor.py, `tensor_plan`): column-parallel
q/k/v and MLP up-projections, row-parallel attention output and down-projections, everything else
whole. Here that plan becomes AutoTP's partition config: one layer spec per split module (a fused
q/k/v projection with its sections as sub-parameters, so each rank takes its heads of q, of k and
of v) and a final catch-all `skip`, with DeepSpeed's built-in name patterns turned off, so AutoTP
applies exactly the compiler's plan and none of its own guesses. AutoTP replaces each split
nn.Linear by its LinearLayer / SubParamLinearLayer (column: all-reduce of the input gradient) or
LinearAllreduce (row: all-reduce of the output) and shards the weights of the whole model built
first, so the initialization is the one-process `build()`'s. The attention modules are then told
their local heads (local_heads.py).

Ranks: DeepSpeed's mesh is (data, tensor), so a tensor group is N consecutive ranks (rank = data
rank x N + tensor rank); the ranks of a group see the same batch (AutoTP checks it on the first
forward) and ZeRO and the gradient all-reduce work over the data-parallel group, which DeepSpeed
takes from the `mpu` (deepspeed.utils.groups) handed to initialize; the config's batch sizes count
data-parallel ranks only.
"""
from __future__ import annotations

import re

import torch

from nnspec.lang.config import ParallelSpec, TrainSpec
from nnspec.train.distributed import DeepSpeedBackend, _cpu_float
from nnspec.train.errors import TrainError
from nnspec.train.local_heads import localize


def data_rank(rank: int, world: int, tensor: int) -> tuple[int, int]:
    """(data-parallel rank, data-parallel degree) of a global rank, with tensor groups of
    `tensor` consecutive ranks (DeepSpeed's (data, tensor) mesh)."""
    return rank // tensor, world // tensor


def plan_for(spec, n: int):
    """The compiler's TensorPlan of `spec` for `n` ranks, checked for what AutoTP can split.

    Raises:
        TrainError: attention heads that do not divide by n.
    """
    from nnspec.place.tensor import tensor_plan

    plan = tensor_plan(spec.ir, n)
    if plan.indivisible:
        path, why = sorted(plan.indivisible.items())[0]
        raise TrainError(f"parallel setting `tensor`: {path}: {why}",
                         "choose a tensor degree that divides every attention's heads")
    return plan


def partition_config(plan, model: torch.nn.Module) -> dict:
    """AutoTP's `tensor_parallel.partition_config` for `plan`: the split modules by exact name,
    every other parameter skipped (kept whole).

    Raises:
        TrainError: a split module that is not an nn.Linear (AutoTP splits only those; an
            nn.MultiheadAttention keeps its projections in one packed parameter).
    """
    specs = []
    for path, style in sorted(plan.splits.items()):
        module = model.get_submodule(path)
        if type(module) is not torch.nn.Linear:
            raise TrainError(f"parallel setting `tensor`: {path} is a {type(module).__name__}; "
                             "DeepSpeed's AutoTP splits only linear layers",
                             "write the attention with linear projections and sdpa (as "
                             "specs/blocks/gpt.nn does), or leave tensor = 1")
        spec = {"patterns": [rf"^{re.escape(path)}\.(weight|bias)$"], "partition_type": style}
        sections = plan.sections.get(path)
        if sections and len(sections) > 1:   # fused q/k/v: each rank takes a slice of each
            spec["shape"] = [list(sections), -1]
            spec["partition_dim"] = 0
        specs.append(spec)
    specs.append({"patterns": [".*"], "partition_type": "skip"})
    return {"use_default_specs": False, "layer_specs": specs}


class TensorParallelBackend(DeepSpeedBackend):
    """A DeepSpeed engine whose model AutoTP split as the compiler planned, data-parallel (and
    ZeRO 1-3) across tensor groups."""

    def __init__(self, spec, train: TrainSpec, parallel: ParallelSpec, config: dict,
                 weights=None):
        """Builds the whole model (from `weights` when given) with the seed the loop just set,
        so the weights are the one-process run's, then lets AutoTP split it. `config` is the
        emitted config, whose `tensor_parallel` block gets the plan's partition config here."""
        from deepspeed.utils import groups
        from nnspec.place.checkpointing import apply, checkpointed

        n = parallel.tensor
        self.plan = plan_for(spec, n)
        model = spec.build(weights=weights)
        block = dict(config.get("tensor_parallel", {}), autotp_size=n,
                     partition_config=partition_config(self.plan, model))
        localize(model, spec.source, self.plan.heads, self.plan.sections, n)
        # after localize: checkpointing wraps an instance's forward, which must be the local one
        apply(model, checkpointed(spec.ir, parallel.activation_checkpointing)[0])
        groups._init_tp_mesh_device(n)  # the (data, tensor) groups, before initialize reads them
        super().__init__(model, train, dict(config, tensor_parallel=block), mpu=groups)
        self.tensor = n
        self.data_rank, self.data_world = data_rank(self.rank, self.world, n)

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole fp32 weights on rank 0: each split layer's shards gathered in turn (a
        collective: every rank calls it)."""
        from deepspeed.module_inject.layers import GatherReplacedLayerParams

        if self.zero == 3:  # DeepSpeed's gather of both dimensions, one layer at a time
            sd = self.engine._zero3_consolidated_16bit_state_dict()
            return _cpu_float(sd) if self.is_main else None
        out: dict[str, torch.Tensor] = {}
        for prefix, layer in self.engine.module.named_modules(remove_duplicate=False):
            own = dict(layer.named_parameters(recurse=False))
            own.update((k, b) for k, b in layer.named_buffers(recurse=False)
                       if k not in layer._non_persistent_buffers_set)
            params = list(layer.parameters(recurse=False))
            with GatherReplacedLayerParams(params, layer, enabled=bool(params)):
                if self.is_main:  # copied while whole: leaving the context shards them again
                    out.update(_cpu_float({f"{prefix}.{k}" if prefix else k: v
                                           for k, v in own.items()}))
        return out if self.is_main else None
