"""Pipeline placement: cut the model's forward pass into DeepSpeed pipeline layers and stages.

A pipeline runs a model as a chain of layers, each taking what the previous one returned, and
sends one tensor across each stage boundary. The top-level forward is flattened into such a chain
of *units* (one pipeline layer each): a block called once (GPT-2's `transformer`) is opened up
into its own steps, a list (`layer1`, `h`) into its items, down to the blocks a list repeats and
the single layers, so the units are what people place: `conv1`, `layer1.0`, `transformer.h.3`.

A boundary may fall between two units only where exactly one float tensor is live (the
activation, which carries the gradient back), and integer or bool tensors that need no gradient
(token ids, an attention mask every block reads, positions) may cross beside it, each boundary a
tuple of tensors. A float value still needed later besides the activation is a residual (`x`
still needed by `h + x`) and stays inside a stage; so does a value of a block that was opened up
and is not its output (BERT's word embeddings, waiting for the position embeddings to be added):
several tensors cross only where the float one is the output of a whole block, a list item or a
top-level layer. Stages are balanced over those cut points by parameters, by unit count, or by
units whose block/layer kind matches `type:REGEX`, or placed explicitly by `stage_boundaries`.

Weights shared between units (`tie=`, or one layer used twice) that land on different stages
become DeepSpeed tied layers (`Partition.ties`): each stage keeps a copy and their gradients are
summed across the stages.

Nothing here knows PyTorch or DeepSpeed: the emitter (emit/pipeline.py) turns a Partition into
modules, the training runtime into a PipelineModule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from nnspec.lang.config import ParallelSpec
from nnspec.lang.diagnostics import Span
from nnspec.ir import Child, Leaf, ModuleDef, Op, Seq, Value, count_params, iter_params
from nnspec.layers.base import T, numel


class PipelineError(Exception):
    """A placement that cannot work; `key` is the parallel setting to point at."""

    def __init__(self, key: str, message: str, help: str | None = None):
        super().__init__(message)
        self.key, self.message, self.help = key, message, help


@dataclass(eq=False)
class Unit:
    """One pipeline layer: a single call in the flattened top-level forward pass."""

    index: int
    path: str                 # state_dict prefix of the module it calls; "" for a functional op
    label: str                # what people call it: the path, or "(add)" for a functional op
    kind: str                 # block name or layer kind, for partition = "type:REGEX"
    target: Child | None      # the module called (None: a functional op)
    module: ModuleDef | None  # the definition whose forward holds `op` (None: a list item)
    op: Op | None             # the IR op, when the unit is one (list items have none)
    args: list[Value]         # tensors it reads, in call order
    outs: list[Value]
    span: Span
    params: int = 0           # parameters of the module it calls (shared ones counted here too)
    keywords: tuple[str, ...] = ()  # a list item's: the names of its last len(keywords) args


@dataclass
class Tie:
    """Weights that several units use. Across stages they become one DeepSpeed tied layer."""

    key: str                              # ModuleDict key: letters, digits, underscores
    units: list[int]                      # units that hold the weight, by index
    attrs: dict[int, list[str]]           # unit -> paths of the shared weights inside the unit
    size: int                             # elements shared
    span: Span


@dataclass
class Partition:
    """The units of a model and the stages they are placed on."""

    units: list[Unit]
    inputs: list[Value]                   # the model's inputs (the first unit's `live` tuple)
    outputs: list[Value]
    live: list[list[Value]]               # live[i]: the tensors passed from unit i to unit i + 1
    bounds: list[int] = field(default_factory=lambda: [0])  # stage s: units[bounds[s]:bounds[s+1]]
    ties: list[Tie] = field(default_factory=list)
    alias: dict[int, Value] = field(default_factory=dict)  # an opened block's inputs and outputs
    whole: set[int] = field(default_factory=set)  # ids of whole blocks' and top-level outputs

    def real(self, v: Value) -> Value:
        """The value `v` stands for once blocks are opened up (a block's input is its argument)."""
        while id(v) in self.alias:
            v = self.alias[id(v)]
        return v

    @property
    def stages(self) -> int:
        return len(self.bounds) - 1

    def stage_units(self, s: int) -> list[Unit]:
        return self.units[self.bounds[s]:self.bounds[s + 1]]

    def stage_of(self, unit: int) -> int:
        return next(s for s in range(self.stages) if self.bounds[s] <= unit < self.bounds[s + 1])

    def stage_params(self, s: int) -> int:
        """Parameters stage s holds: a weight shared within the stage counts once, a tied weight
        on several stages counts on each (each keeps a copy)."""
        own = sum(u.params for u in self.stage_units(s))
        for t in self.ties:
            here = sum(1 for u in t.units if self.stage_of(u) == s)
            own -= max(0, here - 1) * t.size
        return own

    def crossing(self, s: int) -> list[Value]:
        """The tensors sent from stage s to stage s + 1, in the order the layers pass them."""
        return self.live[self.bounds[s + 1] - 1]

    def boundary(self, s: int) -> Value:
        """The float tensor (the activation) sent from stage s to stage s + 1."""
        return next(v for v in self.crossing(s) if v.type.dtype == "float")

    def cut_points(self) -> list[int]:
        """Unit indices a stage may start at: one float tensor crosses there, alone or, when it
        is a whole block's output, beside integer and bool tensors."""
        return [i + 1 for i, live in enumerate(self.live[:-1]) if self.may_cross(live)]

    def may_cross(self, live: list[Value]) -> bool:
        """Whether the tensors `live` between two units may be a stage boundary."""
        floats = [v for v in live if v.type.dtype == "float"]
        # DeepSpeed sends a gradient back for every float tensor of a boundary and none for the
        # others: a second float (a residual, a float mask) would need one it may not have
        return len(floats) == 1 and (len(live) == 1 or id(floats[0]) in self.whole)

    def cross_stage_ties(self) -> list[Tie]:
        return [t for t in self.ties if len({self.stage_of(u) for u in t.units}) > 1]


# ---- flattening ----------------------------------------------------------------------------------

def units_of(root: ModuleDef) -> Partition:
    """Flatten the root forward into units and compute what is live between them."""
    alias: dict[int, Value] = {}
    units: list[Unit] = []
    whole: set[int] = set()
    def real(v: Value) -> Value:
        while id(v) in alias:
            v = alias[id(v)]
        return v

    def add(path: str, label: str, kind: str, target, module, op, args, outs, span):
        params = count_params(target) if target is not None else 0
        units.append(Unit(len(units), path, label, kind, target, module, op,
                          [real(a) for a in args], list(outs), span, params))
        if module is root or module is None:  # a top-level call or a list item
            whole.update(id(v) for v in outs)

    def flatten(module: ModuleDef, prefix: str) -> None:
        calls = _call_counts(module)
        for op in module.ops:
            target = op.target
            args = list(op.args) + list(op.kwargs.values())
            if target is None:
                add("", f"({op.layer.kind})", op.layer.kind, None, module, op, args, op.outs,
                    op.span)
                continue
            path = prefix + module.child_name(target)
            if isinstance(target, Seq) and len(op.outs) == 1:
                out = items(target, path, args, op.span)
                alias[id(op.outs[0])] = out
            elif isinstance(target, ModuleDef) and calls[id(target)] == 1 and not op.kwargs:
                for inner, outer in zip(target.inputs, op.args):
                    alias[id(inner)] = real(outer)
                flatten(target, path + ".")
                for outer, inner in zip(op.outs, target.outputs):
                    alias[id(outer)] = real(inner)
                    whole.add(id(real(inner)))
            else:
                add(path, path, _kind(target), target, module, op, args, op.outs, op.span)

    def items(seq: Seq, path: str, args: list[Value], span: Span) -> Value:
        cur = args[0]
        for i, (item, extra) in enumerate(zip(seq.items, seq.extras)):
            item_path = f"{path}.{seq.item_name(i)}"
            if isinstance(item, Seq) and not any(item.extras):
                cur = items(item, item_path, [cur], span)
                continue
            out = Value(_out_type(item), item_path.rsplit(".", 1)[0].replace(".", "_"))
            add(item_path, item_path, _kind(item), item, None, None,
                [cur, *extra], [out], span)
            units[-1].keywords = seq.keywords[i]
            cur = out
        return cur

    flatten(root, "")
    inputs = list(root.inputs)
    outputs = [real(v) for v in root.outputs]
    part = Partition(units, inputs, outputs, _live(units, inputs, outputs), alias=alias,
                     whole=whole)
    part.bounds = [0, len(units)]
    part.ties = _ties(root, units)
    return part


def _call_counts(module: ModuleDef) -> dict[int, int]:
    counts: dict[int, int] = {}
    for op in module.ops:
        if op.target is not None:
            counts[id(op.target)] = counts.get(id(op.target), 0) + 1
    return counts


def _kind(child: Child) -> str:
    if isinstance(child, Leaf):
        return child.kind
    return "sequential" if isinstance(child, Seq) else child.name


def _out_type(child: Child) -> T:
    if isinstance(child, Leaf):
        out = child.layer.infer(child.ins)
        return out[0] if isinstance(out, tuple) else out
    if isinstance(child, Seq):
        return _out_type(child.items[-1])
    return child.outputs[0].type


def _live(units: list[Unit], inputs: list[Value], outputs: list[Value]) -> list[list[Value]]:
    """live[i]: values defined at or before unit i and read after it (or returned), in the
    order they were defined."""
    n = len(units)
    last: dict[int, int] = {}
    for u in units:
        for v in u.args:
            last[id(v)] = u.index
    for v in outputs:
        last[id(v)] = n
    # only the values still live are carried on (a value dead after unit i is dead after every
    # later one): rescanning every value defined so far made this quadratic in the units
    alive: list[Value] = list(inputs)
    out = []
    for u in units:
        alive = [v for v in alive + [v for v in u.outs if id(v) in last]
                 if last.get(id(v), -1) > u.index]  # a new list: out[i - 1] is kept as it is
        out.append(alive)
    return out


# ---- shared weights ------------------------------------------------------------------------------

def _ties(root: ModuleDef, units: list[Unit]) -> list[Tie]:
    """Every group of units that share a weight: one module called by several units, or a
    `tie=` between weights of different units."""
    by_path = {u.path: u for u in units if u.path}
    groups: list[tuple[str, dict[int, list[str]], int, Span]] = []
    # a module called from several units (the same path): all of its parameters are shared
    users: dict[str, list[Unit]] = {}
    for u in units:
        if u.path:
            users.setdefault(u.path, []).append(u)
    for us in users.values():
        if len(us) > 1:
            names = [n for n, _ in iter_params(us[0].target)]
            groups.append((us[0].path, {u.index: [f"m.{n}" if n else "m" for n in names]
                                        for u in us}, us[0].params, us[0].span))
    # tie=: the consumer's parameter is the source's
    for prefix, module in _modules(root, ""):
        for leaf, param, src, span in module.ties:
            dst = prefix + module.child_name(leaf) + "." + param
            source = prefix + ".".join(src)
            a, b = _owner(by_path, dst), _owner(by_path, source)
            if a is None or b is None or a.index == b.index:
                continue  # inside one unit: the module keeps its own tie
            size = numel(leaf.layer.params(leaf.ins)[param])
            groups.append((source, {b.index: [_attr(b, source)], a.index: [_attr(a, dst)]},
                           size, span))
    ties = []
    for name, attrs, size, span in groups:
        key = re.sub(r"\W", "_", name) or "tied"
        ties.append(Tie(key, sorted(attrs), attrs, size, span))
    return _merge(ties)


def _modules(module: ModuleDef, prefix: str):
    yield prefix, module
    for name, child in module.children:
        for sub_prefix, sub in _children_modules(child, prefix + name):
            yield sub_prefix, sub


def _children_modules(child: Child, path: str):
    if isinstance(child, ModuleDef):
        yield from _modules(child, path + ".")
    elif isinstance(child, Seq):
        for i, item in enumerate(child.items):
            yield from _children_modules(item, f"{path}.{child.item_name(i)}")


def _owner(by_path: dict[str, Unit], param_path: str) -> Unit | None:
    parts = param_path.split(".")
    for k in range(len(parts) - 1, 0, -1):
        u = by_path.get(".".join(parts[:k]))
        if u is not None:
            return u
    return None


def _attr(unit: Unit, param_path: str) -> str:
    return "m." + param_path[len(unit.path) + 1:]


def _merge(ties: list[Tie]) -> list[Tie]:
    """Ties that share a unit: DeepSpeed builds a tied layer once per key and stage, so a unit
    can belong to one key only; merge groups that overlap."""
    out: list[Tie] = []
    for t in ties:
        for o in out:
            if set(o.units) & set(t.units):
                for u, attrs in t.attrs.items():
                    o.attrs.setdefault(u, [])
                    o.attrs[u] += [a for a in attrs if a not in o.attrs[u]]
                o.units = sorted(o.attrs)
                o.size += t.size
                break
        else:
            out.append(t)
    return out


# ---- placement -----------------------------------------------------------------------------------

def partition(root: ModuleDef, parallel: ParallelSpec) -> Partition:
    """The units of `root` placed on `parallel.pipeline_stages` stages.

    Raises:
        PipelineError: no valid placement (too few cut points, a boundary that cuts more than one
            edge, an unknown name in stage_boundaries, a unit in two cross-stage ties).
    """
    part = units_of(root)
    stages = parallel.pipeline_stages
    if stages == 1:
        return part
    cuts = part.cut_points()
    if parallel.stage_boundaries:
        starts = [_start_of(part, name, cuts) for name in parallel.stage_boundaries]
        if starts != sorted(set(starts)):
            raise PipelineError("stage_boundaries", "stage_boundaries must name layers in forward "
                                "order, each once", "list them as they appear in the model")
        part.bounds = [0, *starts, len(part.units)]
    else:
        if len(cuts) < stages - 1:
            raise PipelineError("pipeline_stages", _too_few_cuts(part, cuts, stages),
                                f"use pipeline_stages = {len(cuts) + 1} or fewer"
                                if cuts else "use pipeline_stages = 1")
        weights = _weights(part, parallel.partition)
        part.bounds = _balance(weights, [0] + cuts + [len(part.units)], stages)
    _check_ties(part)
    return part


def _start_of(part: Partition, name: str, cuts: list[int]) -> int:
    matches = [u for u in part.units if u.path == name or u.path.startswith(name + ".")]
    if not matches:
        from nnspec.lang.diagnostics import did_you_mean
        names = [u.path for u in part.units if u.path]
        raise PipelineError("stage_boundaries", f"stage_boundaries: no layer `{name}` at the top "
                            "level of the model", did_you_mean(name, names) or
                            "valid boundaries: " + _names(part, cuts))
    start = matches[0].index
    if start in cuts:
        return start
    live = part.live[start - 1] if start else []
    what = ", ".join(_value_name(part, v) for v in live) or "nothing"
    floats = sum(v.type.dtype == "float" for v in live)
    why = ("only one float tensor may cross a stage boundary (integer or bool ones, such as "
           "masks, may cross beside it)" if floats != 1 else "integer or bool tensors may cross "
           "beside the float one only where it is the output of a whole block, not a value "
           "inside one")
    raise PipelineError("stage_boundaries", f"a stage boundary before `{name}` would cut "
                        f"{len(live)} edges ({what}); {why}",
                        "place stages on block boundaries: " + _names(part, cuts))


def _names(part: Partition, cuts: list[int], limit: int = 8) -> str:
    names = [part.units[i].path for i in cuts if part.units[i].path]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "there are none"


def _value_name(part: Partition, v: Value) -> str:
    for u in part.units:
        if any(o is v for o in u.outs):
            return f"the output of `{u.label}`"
    return f"input `{v.hint}`"


def _too_few_cuts(part: Partition, cuts: list[int], stages: int) -> str:
    crossings: dict[int, tuple[Value, int]] = {}  # value -> places it keeps closed
    for live in part.live[:-1]:
        floats = [v for v in live if v.type.dtype == "float"]
        if len(floats) > 1:
            for v in floats:
                crossings[id(v)] = (v, crossings.get(id(v), (v, 0))[1] + 1)
    why = ""
    if crossings:
        most = max(n for _, n in crossings.values())
        worst = [v for v, n in crossings.values() if n == most][:3]
        why = "; " + ", ".join(_value_name(part, v) for v in worst) + \
            f" {'is' if len(worst) == 1 else 'are'} live across the others"
        if any(any(v is i for i in part.inputs) for v in worst):
            why += " (a float input cannot cross beside the activation; a long or bool one can)"
    return (f"pipeline_stages {stages} needs {stages - 1} stage boundar"
            f"{'y' if stages == 2 else 'ies'}, but the model can be cut in only {len(cuts)} "
            f"place{'s' if len(cuts) != 1 else ''} where a single float tensor passes between "
            f"blocks{why}")


def _weights(part: Partition, method: str) -> list[tuple[int, int]]:
    """(primary, secondary) weight per unit; the secondary breaks ties between placements."""
    if method == "uniform":
        return [(1, 0) for _ in part.units]
    if method.startswith("type:"):
        pattern = re.compile(method[5:], re.IGNORECASE)
        return [(1 if pattern.search(u.kind) else 0, 1) for u in part.units]
    return [(u.params, 1) for u in part.units]


def _balance(weights: list[tuple[int, int]], points: list[int], stages: int) -> list[int]:
    """Contiguous stages over `points` (allowed starts, with 0 and the end) minimizing the
    heaviest stage, then the heaviest stage by the secondary weight: exact, by dynamic
    programming over the cut points."""
    prefix = [(0, 0)]
    for a, b in weights:
        prefix.append((prefix[-1][0] + a, prefix[-1][1] + b))

    def cost(i: int, j: int) -> tuple[int, int]:
        return prefix[j][0] - prefix[i][0], prefix[j][1] - prefix[i][1]

    n = len(points)
    inf = (float("inf"), float("inf"))
    best = [[inf] * n for _ in range(stages + 1)]
    back = [[-1] * n for _ in range(stages + 1)]
    best[0][0] = (0, 0)
    for s in range(1, stages + 1):
        for j in range(1, n):
            for i in range(j):
                if best[s - 1][i] == inf:
                    continue
                c = cost(points[i], points[j])
                cand = (max(best[s - 1][i][0], c[0]), max(best[s - 1][i][1], c[1]))
                if cand < best[s][j]:
                    best[s][j], back[s][j] = cand, i
    bounds, j = [], n - 1
    for s in range(stages, 0, -1):
        bounds.append(points[j])
        j = back[s][j]
    return [0] + bounds[::-1]


def _check_ties(part: Partition) -> None:
    for s in range(part.stages):
        if not part.stage_units(s):
            raise PipelineError("stage_boundaries", f"stage {s} would hold no layer")
    for tie in part.cross_stage_ties():
        for s in range(part.stages):
            holders = [u for u in tie.units if part.stage_of(u) == s]
            if len(holders) > 1 and len({tuple(tie.attrs[u]) for u in holders}) > 1:
                raise PipelineError(
                    "pipeline_stages", f"weights shared by {', '.join(part.units[u].label for u in tie.units)} "
                    "are used in different ways by two layers of one stage, which DeepSpeed's tied "
                    "layers cannot express", "place these layers so that each stage holds one of them")
