"""The one place that knows the order of the passes: parse -> resolve -> check -> lower -> emit."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nnspec.lang.check import DEFAULT_MAX_PARAMS, check, check_block, const_values
from nnspec.place.checkpointing import checkpointed, submodules
from nnspec.lang.diagnostics import Diagnostic, Reporter, SpecError, display_path
from nnspec.emit.summary import render_table, summarize
from nnspec.ir import Leaf, ModuleDef
from nnspec.ir.lower import Lowered, lower
from nnspec.place.partition import Partition
from nnspec.lang.resolve import Program, resolve_file, resolve_text
from nnspec.lang.sections import Settings, evaluate_sections
from nnspec.lang.gc_pause import pauses_collection

@dataclass
class Spec:
    """A checked spec: its IR, and the outputs emitted from it on demand."""

    program: Program
    ir: ModuleDef
    source_name: str
    settings: Settings
    compress_plan: Any = None   # nnspec.compress.directives.Plan, when the spec has a compress section
    model_name: str | None = None              # which model of the file, as load() was given
    overrides: dict[str, Any] | None = None    # the model parameters load() was given
    max_params: int = DEFAULT_MAX_PARAMS
    # what a successful check prints beside `ok` (the layers tensor parallelism keeps whole)
    warnings: list[Diagnostic] = field(default_factory=list)
    # an ensemble's members (nnspec.ensemble.Member), in order; () for a spec without one
    members: tuple = ()
    # a block checked as a model of its own (an ensemble member): its input types
    block_inputs: tuple | None = None

    @cached_property
    @pauses_collection  # a large structure of live objects: see gc_pause.py
    def lowered(self) -> Lowered:
        return lower(self.ir)

    @cached_property
    def source(self) -> str:
        """model.py: standalone PyTorch source (an ensemble's: its members' classes and one
        class that builds them, with the state_dict keys of build())."""
        if self.members:
            from nnspec.emit.ensemble import emit_ensemble_source
            span = self.settings.section_spans.get("ensemble")
            where = f"{span.source.name}:{span.line}" if span else self.source_name
            return emit_ensemble_source([(m.name, m.spec.source) for m in self.members],
                                        self.settings.ensemble.combine, self.source_name, where)
        from nnspec.emit.source import emit_source  # an emitter: may import torch, check must not

        return emit_source(self.lowered, self.source_name, self._variants())

    def _variants(self) -> list:
        """The model checked again with one parameter changed at a time (two values for a
        number): model.py's class takes as free arguments the parameters these fit."""
        from nnspec.emit.blocks import signature_values
        out = []
        for name, value in signature_values(self.ir.signature).items():
            if isinstance(value, bool):
                tries = [not value]
            elif isinstance(value, int):
                # two different values: at 4, value + 7 == 2 * value + 3, and one variant
                # cannot tell a condition on the parameter (`if n_layer != 4`) from the rule
                tries = list(dict.fromkeys([value + 7, 2 * value + 3, value + 5]))[:2]
            elif isinstance(value, float):
                tries = [value * 0.5 + 0.125]
            else:
                continue
            for new in tries:
                try:
                    ir = self._check_again({**(self.overrides or {}), name: new})
                except SpecError:
                    out = [v for v in out if v[0] != name]
                    break
                out.append((name, new, lower(ir)))
        return out

    def _check_again(self, overrides: dict[str, Any]) -> ModuleDef:
        """This spec's model (or block) checked with other parameter values."""
        if self.block_inputs is not None:
            return check_block(self.program, self.model_name, overrides, list(self.block_inputs),
                               self.max_params)
        return check(self.program, self.model_name, overrides, self.max_params)

    def build(self, weights: str | Path | None = None, *, device: Any = None):
        """A fresh torch.nn.Module for this spec: default PyTorch initialization, or the tensors
        of `weights` (a .safetensors or torch file, or a Hugging Face folder) mapped as the
        spec's `weights` section says.

        `device` constructs the parameters there (the default torch device when None);
        `device="meta"` allocates no storage: the same state_dict keys, shapes and dtypes, for
        planning or for materializing part of the model later (`to_empty`).

        Raises:
            SpecError: the checkpoint does not fit the model (missing, unexpected or mis-shaped
                keys, E0741).
            nnspec.weights.WeightsFileError, UnsafeCheckpoint: it cannot be read, or safely.
            ValueError: `weights` with `device="meta"` (meta tensors hold no values to load).
        """
        from nnspec.emit.module import load_source  # torch: only building needs it

        if self.members:
            model = self._build_ensemble(device)
        elif device is None:
            model = load_source(self.source)()
        else:
            import torch
            device = torch.device(device)
            if weights is not None and device.type == "meta":
                raise ValueError("build(weights=..., device='meta'): a meta model holds no values "
                                 "to load weights into; build on a real device, or load the "
                                 "weights after materializing it (to_empty)")
            with device:  # factory calls inside the constructors default to this device
                model = load_source(self.source)()
        if weights is not None:
            from nnspec.weights import load_into
            load_into(model, weights, self)
        return model

    def _build_ensemble(self, device: Any):
        """nnspec.runtime.ensemble.Ensemble of the members, built in order, member i under the
        seed train.seed + i (the global RNG is left as it was)."""
        import contextlib

        import torch
        from nnspec.runtime.ensemble import Ensemble

        if device is not None and torch.device(device).type == "meta":
            device = "meta"
        with torch.random.fork_rng(devices=[]):
            members = []
            for member in self.members:
                torch.manual_seed(member.seed)
                members.append(member.spec.build(device=device))
        with torch.device(device) if device is not None else contextlib.nullcontext():
            return Ensemble(members, self.settings.ensemble.combine)

    @property
    def hf_config(self) -> dict | None:
        """config.json of a Hugging Face folder of this model (the weights section's hf_config
        with the model's parameter values), or None when the spec declares none."""
        from nnspec.lang.config.weights_checks import hf_values, model_params
        return hf_values(self.settings.weights, model_params(self.ir.signature))

    @cached_property
    @pauses_collection  # a large structure of live objects: see gc_pause.py
    def partition(self) -> "Partition":
        """The pipeline layers and stages of the parallel section (one stage without a pipeline);
        the same placement the runtime builds, the planner counts and the summary reports."""
        from nnspec.place.partition import partition
        return partition(self.ir, self.settings.parallel)

    def pipeline_source(self) -> str:
        """model.py's text plus one class per pipeline layer (`LAYERS`), for PipelineModule."""
        from nnspec.emit.stages import emit_pipeline_source
        return self.source + "\n\n" + emit_pipeline_source(self.partition, self.lowered)

    def summary(self, depth: int | None = None) -> dict:
        """The per-layer table as data: params, trainable_params, flops, layers, ...; for a
        pipelined spec also `pipeline`, its stages (layers, parameters held, tensor sent on).
        `depth` N keeps the rows of blocks nested at most N deep (each block's row sums its
        children's). An ensemble's has a row per member, its layers nested under it, and
        totals over all members."""
        if self.members:
            from nnspec.emit.ensemble_summary import summarize_ensemble
            return summarize_ensemble([(m.name, m.spec.summary()) for m in self.members],
                                      self.settings.ensemble.combine, depth)
        out = summarize(self.lowered, depth)
        part = self.partition
        if part.stages > 1:
            out["pipeline"] = [
                {"stage": s, "layers": [u.label for u in part.stage_units(s)],
                 "params": part.stage_params(s),
                 "sends": list(part.boundary(s).type.shape) if s + 1 < part.stages else None,
                 "tied": [t.key for t in part.cross_stage_ties()
                          if any(part.stage_of(u) == s for u in t.units)]}
                for s in range(part.stages)]
            for s, stage in enumerate(out["pipeline"][:-1]):
                extra = [v for v in part.crossing(s) if v is not part.boundary(s)]
                if extra:  # integer tensors (ids, masks) that cross beside the activation
                    stage["sends_also"] = [{"name": v.hint, "dtype": v.type.dtype,
                                            "shape": list(v.type.shape)} for v in extra]
        return out

    def summary_table(self, depth: int | None = None, batch_size: int = 1) -> str:
        """The table `nnspec summary` prints; its memory lines are for `batch_size` samples."""
        summary = self.summary(depth)
        text = render_table(summary, batch_size)
        for stage in summary.get("pipeline", ()):
            layers = stage["layers"]
            span = layers[0] if len(layers) == 1 else f"{layers[0]} .. {layers[-1]}"
            sends = f", sends (B, {', '.join(map(str, stage['sends']))})" if stage["sends"] else ""
            for also in stage.get("sends_also", ()):
                shape = ", ".join(map(str, also["shape"]))
                sends += f" + {also['name']} (B, {shape}) {also['dtype']}"
            tied = f", tied: {', '.join(stage['tied'])}" if stage["tied"] else ""
            text += (f"Pipeline stage {stage['stage']}: {span} ({len(layers)} layers, "
                     f"{stage['params']:,} params{sends}{tied})\n")
        return text

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def world_size(self) -> int:
        """The world size the parallel section describes (data_parallel x pipeline_stages x
        tensor)."""
        return default_world_size(self.settings)

    def total_steps(self) -> int | None:
        """Optimizer steps of the whole run, when they can be known before loading data."""
        from nnspec.lang.config import known_total_steps

        return known_total_steps(self.settings.train)

    def deepspeed_config(self, world_size: int | None = None) -> dict:
        """The DeepSpeed config for `world_size` processes (default: the spec's own)."""
        from nnspec.emit.deepspeed import emit_deepspeed_config
        from nnspec.ir import largest_layer

        return emit_deepspeed_config(self.settings.train, self.settings.parallel,
                                     world_size or self.world_size, total_steps=self.total_steps(),
                                     largest_layer=largest_layer(self.ir))


def default_world_size(settings: Settings) -> int:
    p = settings.parallel
    return p.pipeline_stages * p.tensor * (p.data_parallel if isinstance(p.data_parallel, int)
                                           else 1)


def load(path: str | Path, *, model: str | None = None, max_params: int = DEFAULT_MAX_PARAMS,
         sets: dict[str, Any] | None = None, world_size: int | None = None,
         **overrides: Any) -> Spec:
    """Read, resolve and check a .nn file.

    Args:
        path: the spec.
        model: which model, when the file defines several.
        max_params: refuse larger models (checked without allocating anything).
        sets: overrides of the train/parallel sections, e.g. {"parallel.zero": 3}.
        world_size: check the parallel section for this many processes (default: its own).
        **overrides: values for the model's parameters, e.g. num_classes=10.

    Raises:
        SpecError: the spec has errors; `str(err)` renders every diagnostic.
    """
    program = resolve_file(path)
    return _checked(program, display_path(Path(path)), model, max_params, sets, world_size,
                    overrides)


def loads(text: str, *, name: str = "<string>", base: Path | None = None, model: str | None = None,
          max_params: int = DEFAULT_MAX_PARAMS, sets: dict[str, Any] | None = None,
          world_size: int | None = None, **overrides: Any) -> Spec:
    """Like `load`, for a spec given as text (includes resolve relative to `base`)."""
    program = resolve_text(text, name, base)
    return _checked(program, name, model, max_params, sets, world_size, overrides)


def _checked(program: Program, name: str, model, max_params, sets, world_size, overrides) -> Spec:
    """Run every pass that can proceed and report all their errors together: the model and the
    sections do not depend on each other; the parallel checks need valid train and parallel
    sections, the compress directives, activation checkpointing, the pipeline partition and the
    data check need the model too."""
    reporter = Reporter()
    if model is None and "ensemble" in program.sections:
        from nnspec.ensemble import spec_model
        model = spec_model(program)
    try:
        ir = check(program, model, overrides, max_params)
    except SpecError as err:
        reporter.extend(err)
        ir = None
    try:
        consts = const_values(program)
    except SpecError as err:
        if ir is not None:  # else the model check has reported the constants it reads
            reporter.extend(err)
        reporter.check()  # sections read the constants: nothing more can proceed
    settings = evaluate_sections(program.sections, consts, dict(sets or {}), reporter)
    placement_ok = not settings.invalid & {"train", "parallel"}
    placement_warnings: list[Diagnostic] = []
    if placement_ok:
        world = world_size or default_world_size(settings)
        if "ensemble" not in settings.invalid:
            from nnspec.ensemble import member_world_size
            world = member_world_size(settings, world)
        placement_ok, placement_warnings = _check_placement(settings, world, reporter)
    if "train" not in settings.invalid and _names_data(settings):
        from nnspec.data.check import check_data

        check_data(ir, program, settings, reporter)
    if ir is None:
        reporter.check()
    spec = Spec(program, ir, name, settings, model_name=model, overrides=dict(overrides),
                max_params=max_params)
    spec.warnings += placement_warnings
    if "compress" in program.sections and "compress" not in settings.invalid:
        from nnspec.compress.directives import read_directives

        root = program.root if program.root.is_dir() else program.root.parent
        spec.compress_plan = read_directives(settings.compress, ir, program.sections["compress"],
                                             settings.section_spans.get("compress"), reporter, root)
    if "parallel" not in settings.invalid:
        placement_ok &= _check_checkpointing(ir, settings, reporter)
    if "weights" in program.sections:  # with a misspelt setting, the others are still checked
        _check_weights(ir, settings, reporter)
    if "parallel" not in settings.invalid and settings.parallel.tensor > 1:
        from nnspec.place.tensor_check import check_tensor

        spec.warnings += check_tensor(ir, settings, reporter)
    if ir is not None and "ensemble" not in settings.invalid:
        from nnspec.ensemble import is_ensemble
        if is_ensemble(settings):
            # the parallel section describes one member's placement: only a world size given
            # (--world-size, the runner's) says how many ranks the members share
            spec.members = _ensemble_members(spec, world_size, reporter)
    if placement_ok and settings.parallel.pipeline_stages > 1:
        from nnspec.place.partition import PipelineError
        try:
            spec.partition
        except PipelineError as err:
            reporter.error("E0711", err.message, settings.span_of("parallel", err.key), err.help)
    reporter.check()
    return spec


def _names_data(settings: Settings) -> bool:
    """Whether the spec names its data (`data = ...` in its train section, or --set train.data):
    only then is the data checked, so a spec that does not say it trains on the default digits
    (resnet18 for 224x224 images, a train section only for the optimizer) is not held to it."""
    return "data" in settings.written.get("train", {})


def _check_placement(settings: Settings, world_size: int, reporter: Reporter
                     ) -> tuple[bool, list[Diagnostic]]:
    """The train + parallel settings for this world size (E0710); True when they fit, and the
    warnings (W0710: settings that run but do nothing here, such as ZeRO with one data-parallel
    rank), which `check` prints beside `ok` as `train` logs them."""
    from nnspec.lang.config import check_parallel

    ok, warnings = True, []
    for problem in check_parallel(settings.train, settings.parallel, world_size):
        span = settings.span_of(problem.section, problem.key)
        if problem.severity == "error":
            ok = False
            reporter.error("E0710", problem.message, span, problem.help)
        else:
            warnings.append(Diagnostic("W0710", problem.message, span, problem.help,
                                       severity="warning"))
    return ok, warnings


def _check_weights(ir: ModuleDef, settings: Settings, reporter: Reporter) -> None:
    """The weights section's renames compile and its transposes name weights (E0740)."""
    from nnspec.lang.config.weights_checks import check_weights

    keys = [f"{path}.{p}" for path, _, child in submodules(ir) if isinstance(child, Leaf)
            for p in ("weight", "bias")]
    check_weights(settings.weights, keys, lambda key: settings.span_of("weights", key), reporter)


def _check_checkpointing(ir: ModuleDef, settings: Settings, reporter: Reporter) -> bool:
    """Every activation_checkpointing pattern names a module of the model (E0712)."""
    _, unmatched = checkpointed(ir, settings.parallel.activation_checkpointing)
    for pattern in unmatched:
        reporter.error("E0712", f"activation_checkpointing: `{pattern}` matches no module of the "
                       "model", settings.span_of("parallel", "activation_checkpointing"),
                       "name blocks by path (layer1.0, transformer.h.*) or by block name")
    return not unmatched


def _ensemble_members(spec: Spec, world_size: int | None, reporter: Reporter) -> tuple:
    """The ensemble section's members, each checked as a spec of its own (errors reported);
    `world_size` None: not known before the launch."""
    from nnspec.ensemble import (Member, check_members, check_training, member_irs,
                                 member_refs)

    settings, program, overrides = spec.settings, spec.program, spec.overrides or {}
    before = len(reporter.diagnostics)
    check_training(settings, world_size, reporter)
    refs = member_refs(settings, program, spec.ir, overrides, reporter)
    irs = refs and member_irs(settings, program, spec.ir, overrides, refs, spec.max_params,
                              reporter)
    if not irs:
        return ()
    check_members(settings, program, refs, irs, reporter)
    if len(reporter.diagnostics) > before:
        return ()
    inputs = tuple(v.type for v in spec.ir.inputs)
    return tuple(
        Member(ref.index, ref.name,
               Spec(program, ir, spec.source_name, _member_settings(settings, seed),
                    model_name=ref.definition.name, overrides=dict(ref.overrides),
                    max_params=spec.max_params, block_inputs=inputs if ref.is_block else None),
               seed, settings.ensemble.vary)
        for ref, ir, seed in ((r, i, settings.train.seed + r.index) for r, i in zip(refs, irs)))


def _member_settings(settings: Settings, seed: int) -> Settings:
    """The spec's settings for one member: no ensemble section, and the member's own seed."""
    from dataclasses import replace
    from nnspec.lang.config import EnsembleSpec

    return replace(settings, train=settings.train.model_copy(update={"seed": seed}),
                   ensemble=EnsembleSpec(),
                   spans={k: v for k, v in settings.spans.items() if not k.startswith("ensemble.")},
                   section_spans={k: v for k, v in settings.section_spans.items()
                                  if k != "ensemble"},
                   written={k: v for k, v in settings.written.items() if k != "ensemble"})
