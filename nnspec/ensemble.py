"""Ensembles: the members an `ensemble` section names, and what must hold for them to combine.

`members = 5` makes five copies of the spec's model; `members = [digits_mlp, digits_mlp(hidden=64),
Cnn(32)]` names models and blocks of the file with parameter values (a block takes the spec's
model's inputs). compile.py checks each member as a spec of its own; this module resolves the
names (E0750, E0751) and checks what the combination needs (E0752-E0756). Torch-free: `check`
goes through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnspec.ir import ModuleDef
from nnspec.lang import syntax as S
from nnspec.lang.check import check, check_block
from nnspec.lang.config import Call
from nnspec.lang.diagnostics import Reporter, Span, SpecError, did_you_mean
from nnspec.lang.resolve import Program
from nnspec.lang.sections import Settings

VARY = {"seed": "initialization and shuffling only", "bootstrap": "a sample with replacement "
        "of the training set", "subset": "subset(fraction): a random part of the training set"}


@dataclass(frozen=True)
class Member:
    """One member of an ensemble: `spec` is its own checked spec (no ensemble section; its
    train.seed is `seed`), so `spec.build()` after seeding with `seed` gives the member's
    initial weights in the ensemble that `Spec.build()` makes."""

    index: int
    name: str            # as written in the section: "digits_mlp(hidden=64)"
    spec: Any            # nnspec.compile.Spec
    seed: int            # train.seed + index
    vary: Call | str     # the section's vary: seed, bootstrap or subset(fraction)


@dataclass(frozen=True)
class MemberRef:
    """A member as the section names it, resolved to a definition and its parameter values."""

    index: int
    name: str
    definition: S.Definition
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def is_block(self) -> bool:
        return not self.definition.is_model


def is_ensemble(settings: Settings) -> bool:
    """Whether the spec declares an ensemble (a section, or an --set ensemble.* override)."""
    return "ensemble" in settings.section_spans or bool(settings.written.get("ensemble"))


def spec_model(program: Program) -> str | None:
    """The model a file of several models is checked as when its ensemble lists some of them
    (`members = [mlp, lenet]`): the first model listed; None when the usual rule applies."""
    section = program.sections.get("ensemble")
    node = next((s.value for s in section.settings if s.key == "members"), None) \
        if section is not None else None
    if len(program.root_models) < 2 or not isinstance(node, S.ListExpr):
        return None
    models = {d.name for d in program.root_models}
    heads = [item.func if isinstance(item, S.Call) else item for item in node.items]
    return next((h.id for h in heads if isinstance(h, S.Name) and h.id in models), None)


def member_refs(settings: Settings, program: Program, model: ModuleDef,
                overrides: dict[str, Any], reporter: Reporter) -> list[MemberRef] | None:
    """The members the section names, in order; None when one of them is refused (reported).
    `model` is the spec's model and `overrides` its parameter values from the caller: N copies
    are that model, and a named member takes those values for the parameters it shares."""
    members = settings.ensemble.members
    span = settings.span_of("ensemble", "members")
    count = member_count(settings)
    if count < 2:
        reporter.error("E0752", f"an ensemble of {count} member combines nothing", span,
                       "give it two or more: `members = 5`, or a list of models and blocks")
        return None
    if isinstance(members, int):
        root = program.definitions[model.name]
        return [MemberRef(i, model.name, root, dict(overrides)) for i in range(members)]
    refs = [_resolve(i, entry, _Where(settings, program, i, _name(entry)), program, overrides,
                     reporter) for i, entry in enumerate(members)]
    return None if None in refs else refs  # type: ignore[return-value]


@dataclass(frozen=True)
class _Where:
    """Where member `index` (named `name`) is written: its entry in `members = [...]`, or one of
    its arguments; the whole setting when the list came from --set or a constant."""

    settings: Settings
    program: Program
    index: int
    name: str

    def span(self, argument: str | int | None = None) -> Span | None:
        item = self._item()
        if item is None:
            return self.settings.span_of("ensemble", "members")
        if argument is None or not isinstance(item, S.Call):
            return item.span
        args = [a for a in item.args if a.name == argument] if isinstance(argument, str) else \
            [a for a in item.args if a.name is None][argument:argument + 1]
        return args[0].span if args else item.span

    def _item(self) -> S.Node | None:
        section = self.program.sections.get("ensemble")
        node = next((s.value for s in section.settings if s.key == "members"), None) \
            if section is not None else None
        if not isinstance(node, S.ListExpr) or self.index >= len(node.items):
            return None
        item = node.items[self.index]
        head = item.func if isinstance(item, S.Call) else item
        return item if isinstance(head, S.Name) and head.id == self.name else None


def _resolve(index: int, entry: str | Call, where: _Where, program: Program,
             overrides: dict[str, Any], reporter: Reporter) -> MemberRef | None:
    """One entry of `members = [...]`: its definition, and its arguments bound to parameters."""
    span = where.span()
    call = entry if isinstance(entry, Call) else Call(name=entry)
    defn = program.definitions.get(call.name)
    if defn is None:
        names = [d.name for d in program.definitions.values()]
        reporter.error("E0750", f"ensemble member `{call.name}`: no model or block of that name",
                       span, did_you_mean(call.name, names)
                       or f"models and blocks of this spec: {', '.join(names) or '(none)'}")
        return None
    params = [p.name for p in defn.params]
    what = f"ensemble member `{call.name}`"
    if len(call.args) > len(params):
        reporter.error("E0751", f"{what} takes {len(params)} parameter values, got "
                       f"{len(call.args)}", where.span(len(params)), f"its parameters: {', '.join(params) or '(none)'}")
        return None
    bound = dict(zip(params, call.args))
    for key, value in call.kwargs.items():
        if key not in params:
            reporter.error("E0751", f"{what} has no parameter `{key}`", where.span(key),
                           did_you_mean(key, params)
                           or f"its parameters: {', '.join(params) or '(none)'}")
            return None
        if key in bound:
            reporter.error("E0751", f"{what}: parameter `{key}` given twice", where.span(key),
                           "give it by position or by name, not both")
            return None
        bound[key] = value
    inherited = {k: v for k, v in overrides.items() if k in params and k not in bound}
    given = {**inherited, **bound}
    values = {p: given[p] for p in params if p in given}  # the definition's order, as in a call
    missing = [p.name for p in defn.params if p.default is None and p.name not in values]
    if missing:
        reporter.error("E0751", f"{what} needs a value for `{missing[0]}`", span,
                       f"write `{call.name}({missing[0]}=...)` in the members list")
        return None
    return MemberRef(index, _written(call), defn, values)


def _name(entry: str | Call) -> str:
    return entry.name if isinstance(entry, Call) else entry


def _written(call: Call) -> str:
    """A member as the section writes it: `digits_mlp`, `Cnn(32)`, `mlp(hidden=64)`."""
    args = [repr(a) for a in call.args] + [f"{k}={v!r}" for k, v in call.kwargs.items()]
    return f"{call.name}({', '.join(args)})" if args else call.name


def member_span(settings: Settings, program: Program, ref: MemberRef) -> Span | None:
    """Where the section names member `ref`."""
    return _Where(settings, program, ref.index, ref.definition.name).span()


def member_irs(settings: Settings, program: Program, model: ModuleDef,
               overrides: dict[str, Any], refs: list[MemberRef], max_params: int,
               reporter: Reporter) -> list[ModuleDef] | None:
    """Each member checked as a model of its own (a block given the spec's model's inputs); a
    member that repeats another's definition and values shares its IR. None when one of them
    fails: its errors are reported with a note pointing at the member."""
    checked: dict[str, ModuleDef] = {_key(model.name, overrides): model}
    inputs = [v.type for v in model.inputs]
    failed = False
    for ref in refs:
        key = _key(ref.definition.name, ref.overrides)
        if key in checked:
            continue
        try:
            checked[key] = (check_block(program, ref.definition.name, ref.overrides, inputs,
                                        max_params) if ref.is_block else
                            check(program, ref.definition.name, ref.overrides, max_params))
        except SpecError as err:
            note = (f"while checking ensemble member `{ref.name}`"
                    + (f" on the inputs of `{model.name}`" if ref.is_block else ""),
                    member_span(settings, program, ref))
            for diagnostic in err.diagnostics:
                diagnostic.notes = [*diagnostic.notes, note]
            reporter.extend(err)
            failed = True
    return None if failed else [checked[_key(r.definition.name, r.overrides)] for r in refs]


def _key(name: str, overrides: dict[str, Any]) -> str:
    return name + repr(sorted(overrides.items()))


def check_members(settings: Settings, program: Program, refs: list[MemberRef],
                  irs: list[ModuleDef], reporter: Reporter) -> None:
    """What combining the members needs: the same inputs and one output of the same type with a
    class dimension (E0753, E0754)."""
    ens = settings.ensemble
    first, first_ir = refs[0], irs[0]
    first_note = [(f"`{first.name}` is member 0", member_span(settings, program, first))]
    for ref, ir in zip(refs, irs):
        if len(ir.outputs) != 1:
            reporter.error("E0753", f"ensemble member `{ref.name}` has {len(ir.outputs)} outputs; "
                           "an ensemble combines one output per member",
                           member_span(settings, program, ref),
                           "give the member one `out`, or wrap it in a model that picks one")
            return
    inputs = [[v.type for v in ir.inputs] for ir in irs]
    for ref, ir, types in zip(refs[1:], irs[1:], inputs[1:]):
        if types != inputs[0]:
            reporter.error("E0753", f"ensemble members take different inputs: `{first.name}` "
                           f"{_types(inputs[0])}, `{ref.name}` {_types(types)}",
                           member_span(settings, program, ref),
                           "every member is given the same inputs", first_note)
            return
        if ir.outputs[0].type != first_ir.outputs[0].type:
            reporter.error("E0753", f"ensemble members give different outputs: `{first.name}` "
                           f"{first_ir.outputs[0].type}, `{ref.name}` {ir.outputs[0].type}",
                           member_span(settings, program, ref),
                           f"`{ens.combine}` combines outputs of one shape: give the members "
                           "the same number of classes", first_note)
            return
    out = first_ir.outputs[0].type
    if out.dtype != "float" or (ens.combine != "mean_logits" and not out.shape):
        reporter.error("E0754", f"combine = {ens.combine} needs outputs with a class dimension "
                       f"(float [B, ..., classes]); the members give {out}",
                       settings.span_of("ensemble", "combine"),
                       "end the members with a layer that gives one score per class, e.g. "
                       "`linear(num_classes)`" + ("" if ens.combine == "mean_logits" or
                                                  out.dtype != "float" else
                                                  ", or combine = mean_logits"))


def member_count(settings: Settings) -> int:
    members = settings.ensemble.members
    return members if isinstance(members, int) else len(members)


def resolved_placement(settings: Settings, world_size: int) -> str:
    """sequential or per_rank for this many processes: auto is per_rank when the world size
    equals the member count (training and `nnspec plan` decide it the same way)."""
    placement = settings.ensemble.placement
    if placement == "auto":
        return "per_rank" if world_size == member_count(settings) else "sequential"
    return placement


def launch_world_size(settings: Settings, world_size: int) -> int:
    """The processes `nnspec launch` starts: one per member when the members train one per rank
    (placement = per_rank), else the parallel section's world size (`auto` follows what is
    launched: give --num-accelerators equal to the member count for per_rank)."""
    if is_ensemble(settings) and settings.ensemble.placement == "per_rank":
        return member_count(settings)
    return world_size


def member_world_size(settings: Settings, world_size: int) -> int:
    """The processes that train one member: the world size split among the members when each
    rank trains its own (per_rank), else all of them. The parallel section is checked for this
    many processes."""
    if not is_ensemble(settings):
        return world_size
    count = member_count(settings)
    per_rank = resolved_placement(settings, world_size) == "per_rank"
    return world_size // count if per_rank and count > 1 and world_size % count == 0 \
        else world_size


def check_training(settings: Settings, world_size: int | None, reporter: Reporter) -> None:
    """How the members are trained: a known way to vary them (E0755), a placement the world
    size can run (E0756; None: the world size is known only at the launch)."""
    _check_vary(settings, reporter)
    count = member_count(settings)
    if settings.ensemble.placement == "per_rank" and world_size not in (None, count) \
            and count > 1:
        reporter.error("E0756", f"placement = per_rank runs one member per rank: {count} "
                       f"members need a world size of {count}, not {world_size}",
                       settings.span_of("ensemble", "placement"),
                       f"launch {count} processes, or use placement = sequential (or auto)")


def _check_vary(settings: Settings, reporter: Reporter) -> None:
    vary = settings.ensemble.vary
    span = settings.span_of("ensemble", "vary")
    call = vary if isinstance(vary, Call) else Call(name=vary)
    if call.name not in VARY:
        reporter.error("E0755", f"vary: no way `{call.name}` to vary the members", span,
                       did_you_mean(call.name, VARY) or
                       "; ".join(f"{k}: {v}" for k, v in VARY.items()))
        return
    if call.name != "subset":
        if call.args or call.kwargs:
            reporter.error("E0755", f"vary = {call.name} takes no arguments", span,
                           f"write `vary = {call.name}`")
        return
    values = list(call.args) + [call.kwargs[k] for k in call.kwargs if k == "fraction"]
    if len(values) != 1 or set(call.kwargs) - {"fraction"}:
        reporter.error("E0755", "vary = subset takes one value, the fraction of the training set "
                       "each member sees", span, "write e.g. `vary = subset(0.5)`")
        return
    fraction = values[0]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        reporter.error("E0755", f"vary = subset({fraction!r}): the fraction must lie strictly "
                       "between 0 and 1", span, "write e.g. `vary = subset(0.5)`; "
                       "`vary = bootstrap` samples the whole set with replacement")


def _types(types: list) -> str:
    return "(" + ", ".join(map(str, types)) + ")"
