"""Pipeline training under the runner: a DeepSpeed PipelineModule built from the spec's partition.

The compiler places the model (nnspec/place/partition.py): one pipeline layer per unit, stage
bounds where one float tensor crosses (integer ones such as masks may cross beside it: DeepSpeed
sends the tuple, and gradients back for the float tensors only), tied layers for weights shared
across stages. Here each unit's emitted class (emit/stages.py) becomes a `LayerSpec`, or a
`TiedLayerSpec` when its weights are shared with a unit on another stage; the PipelineModule
takes the compiler's bounds instead of partitioning again, so what `nnspec compile` and
`nnspec plan` report is what runs. `train_batch` pulls the step's micro-batches; the last stage
computes the loss, and evaluation gathers its logits.

Ranks are laid out as DeepSpeed's PipeDataParallelTopology does: rank = stage * dp + data rank.
Each rank materializes only its stage's weights (train/construct.py), with the values a
one-process `build()` gives them under the same seed.
"""
from __future__ import annotations

from functools import partial
import torch

from nnspec.lang.config import ParallelSpec, TrainSpec
from nnspec.train.construct import stage_model
from nnspec.train.distributed import DeepSpeedBackend
from nnspec.train.errors import TrainError


def data_rank(rank: int, world: int, stages: int) -> tuple[int, int]:
    """(data-parallel rank, data-parallel degree) of a global rank in a pipelined run."""
    dp = world // stages
    return rank % dp, dp


def _run(layer, _tied_module, live):
    """A tied layer's forward: its own unit's code, over the weights the tied module holds."""
    return layer(live)


def _local_stage(stages: int) -> int:
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return rank // (world // stages)  # rank = stage * dp + data rank


def _stage_modules(part, classes, stage: int, model) -> list:
    """What the pipeline layers of `stage` hold of `model` (modules, or bare parameters)."""
    layers = [cls(model) for cls in classes[part.bounds[stage]:part.bounds[stage + 1]]]
    return [layer.m for layer in layers if hasattr(layer, "m")]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _with_grad(out):
    """A stage's outputs, each float one made to require grad. DeepSpeed calls backward on every
    float tensor a stage sends (with the gradient the next stage returns), which fails on one
    that needs none: an activation computed from the inputs alone, before any weight. As a leaf
    it takes the gradient and stops there. Integer and bool tensors (ids, masks) get none; nor
    does anything without grad mode (evaluation, a checkpointed segment's first run)."""
    if isinstance(out, tuple):
        return tuple(_with_grad(t) for t in out)
    if out.is_floating_point() and not out.requires_grad and torch.is_grad_enabled():
        return out.detach().requires_grad_()
    return out


def stage_classes(part, classes: list) -> list:
    """The pipeline layers' classes, the last one of every stage but the last sending outputs
    that the backward pass can go through (`_with_grad`)."""
    out = list(classes)
    for s in range(part.stages - 1):
        out[part.bounds[s + 1] - 1] = _sending(classes[part.bounds[s + 1] - 1])
    return out


def _sending(cls):
    def forward(self, live):
        return _with_grad(cls.forward(self, live))
    # the same name: activation checkpointing picks its layers by class name
    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})


class PipelineBackend(DeepSpeedBackend):
    """A pipelined model trained by DeepSpeed's PipelineEngine (ZeRO 0/1, bf16, accumulation,
    clipping, tied layers, layer-wise activation checkpointing)."""

    def __init__(self, spec, train: TrainSpec, parallel: ParallelSpec, config: dict, objective):
        from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec

        from nnspec.emit.module import load_module
        from nnspec.emit.stages import unit_class

        part = spec.partition
        generated = load_module(spec.pipeline_source())
        # only this stage's tensors are materialized, with the values build() gives them
        model = stage_model(generated.Model, partial(_stage_modules, part, generated.LAYERS,
                                                     _local_stage(part.stages)))
        tie_of = {u: t for t in part.cross_stage_ties() for u in t.units}
        builds = {(t.key, part.stage_of(u)): u for t in part.cross_stage_ties()
                  for u in reversed(t.units)}  # the first holder on each stage builds the module
        layers = []
        for unit, cls in zip(part.units, stage_classes(part, generated.LAYERS)):
            tie = tie_of.get(unit.index)
            if tie is None:
                layers.append(LayerSpec(cls, model))
                continue
            # The builder runs as the module itself, so DeepSpeed saves and loads its weights
            # with the stage's layer files; a later holder on the same stage runs its own code
            # over the same weights (DeepSpeed does not save a forward_fn layer).
            builder = builds[(tie.key, part.stage_of(unit.index))] == unit.index
            layers.append(TiedLayerSpec(tie.key, cls, model, tied_weight_attr=tie.attrs[unit.index],
                                        forward_fn=None if builder else partial(_run, cls(model))))
        from nnspec.place.checkpointing import checkpointed
        paths, _ = checkpointed(spec.ir, parallel.activation_checkpointing)
        recompute = [unit_class(u) for u in part.units if u.path and any(
            u.path == p or u.path.startswith(p + ".") or p.startswith(u.path + ".") for p in paths)]

        bounds = list(part.bounds)

        class Pipeline(PipelineModule):
            def _partition_layers(self, method="uniform"):
                # the compiler's placement, not a second partitioning
                self.parts = bounds
                stage = self._topo.get_coord(self.global_rank).pipe
                self._set_bounds(start=self.parts[stage], stop=self.parts[stage + 1])

        def loss_fn(out, y):
            return objective.loss(_first(out).float(), y)

        module = Pipeline(layers=layers, num_stages=part.stages, loss_fn=loss_fn,
                          activation_checkpoint_interval=1 if recompute else 0,
                          checkpointable_layers=recompute or None)
        del model, layers
        self.part = part
        super().__init__(module, train, config)  # the engine: DeepSpeed picks PipelineEngine
        self.data_rank, self.data_world = data_rank(self.rank, self.world, part.stages)
        self.stage = self.engine.stage_id
        if (self.engine.grid.data_parallel_id, self.stage) != (self.data_rank, self.rank // self.data_world):
            raise TrainError("DeepSpeed placed the pipeline ranks unexpectedly "
                             f"(rank {self.rank}: stage {self.stage}, data rank "
                             f"{self.engine.grid.data_parallel_id})")
        self._shape = None

    def _batch(self, inputs, y):
        xs = self._inputs(inputs)
        return (xs[0] if len(xs) == 1 else tuple(xs)), y.to(self.device)

    def _shaped(self, shape) -> None:
        """The engine keeps its activation buffers between batches: reset them when the batch
        shape changes (evaluation batches differ from training micro-batches)."""
        if shape != self._shape:
            self.engine.reset_activation_shape()
            self._shape = shape

    def train_step(self, micro: list, objective) -> float:
        self._shaped(("train", len(micro[0][1])))
        loss = self.engine.train_batch(data_iter=iter([self._batch(x, y) for x, y in micro]))
        return float(loss)

    def forward(self, inputs, labels=None) -> torch.Tensor | None:
        """The logits on the last stage; None on the others (they hold no outputs). The engine
        computes the loss as well (it cannot return logits otherwise); the loop recomputes it
        from the logits with the metrics."""
        n = len(inputs[0])
        self._shaped(("eval", n))
        batch = self._batch(inputs, labels if labels is not None else torch.zeros(n).long())
        self.engine.total_loss = None  # the engine adds evaluation losses to the training sum
        _, logits = self.engine.eval_batch(iter([batch]), return_logits=True, bcast_loss=False,
                                           reduce_output=None, num_micro_batches=1)
        self.engine.total_loss = None
        if not self.engine.is_last_stage():
            return None
        return _first(logits).float()

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model's fp32 weights under the spec's names, gathered on rank 0 from the
        first data-parallel replica of every stage."""
        from nnspec.train.distributed import _cpu_float
        local = {}
        if self.data_rank == 0:
            start = self.part.bounds[self.stage]
            stop = self.part.bounds[self.stage + 1]
            tied_unit = {}
            for unit in self.part.units[start:stop]:
                for t in self.part.cross_stage_ties():
                    if unit.index in t.units:
                        tied_unit.setdefault(t.key, unit)
            for name, value in _cpu_float(self.engine.module.state_dict()).items():
                local[self._spec_name(name, tied_unit)] = value
        parts = [None] * self.world
        torch.distributed.all_gather_object(parts, local)
        if not self.is_main:
            return None
        merged: dict[str, torch.Tensor] = {}
        for p in parts:
            merged.update(p)
        return merged

    def _spec_name(self, name: str, tied_unit: dict) -> str:
        head, _, rest = name.partition(".")
        if head == "tied_modules":
            key, _, rest = rest.partition(".")
            unit = tied_unit[key]
        else:
            unit = self.part.units[int(head)]
        assert rest.startswith("m."), name
        return f"{unit.path}.{rest[2:]}"

