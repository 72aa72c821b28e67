"""Tensor parallelism decided from the IR, the Megatron-LM way: a linear layer split by its
output features (column-parallel) feeds, through elementwise ops and attention only, a linear
split by its input features (row-parallel), so each rank computes its slice of the widths and
one all-reduce after the row-parallel layer sums the slices. Attention splits by heads: q, k and
v come from column-parallel projections (a fused q/k/v projection splits section by section),
each rank attends with its heads, and the output projection is row-parallel. Everything else
with parameters stays whole on every rank, with the reason. Torch-free: `check` and `plan` read
it.

The decision follows the dataflow, not the names: a block written with other names, or an MLP
whose projections live in different blocks (BERT's intermediate and output), splits the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nnspec.ir import ModuleDef
from nnspec.lang.diagnostics import Span
from nnspec.layers.base import numel
from nnspec.place.tensor_graph import Call, Graph, flatten
from nnspec.place.tensor_units import ATTENTION_UNITS, attention_unit

Style = Literal["column", "row"]

# kinds through which a split width passes unchanged: each output feature depends only on the
# same feature of the inputs (every input of a binary op must be split the same way)
POINTWISE = frozenset({
    "relu", "relu6", "tanh", "sigmoid", "silu", "swish", "mish", "hardsigmoid", "hardswish",
    "tanhshrink", "gelu", "leaky_relu", "elu", "softplus", "hardtanh", "identity",
    "dropout", "alpha_dropout", "stochastic_depth",
    "add", "sub", "mul", "div", "abs", "exp", "log", "sin", "cos", "sqrt", "neg", "cast",
    "rsub", "rdiv", "where"})
ATTENTION_OPS = frozenset({"sdpa", "kv_attention"})  # attend over heads of q, k, v they are given


@dataclass(frozen=True)
class AllReduce:
    """One all-reduce tensor parallelism adds per step: after a row-parallel layer in the forward
    pass, or of the input gradient of column-parallel layers in the backward pass."""

    at: str                          # the layer whose output (forward) or input (backward) it is
    direction: Literal["forward", "backward"]
    elements: int                    # per sample


@dataclass(frozen=True)
class TensorPlan:
    """How `parallel { tensor = n }` splits a model. Paths are module paths in the built model's
    state_dict naming.

    splits: each split module -> column (its output features, and its own in_proj for an attention
        module) or row (its input features; its bias stays whole).
    heads: attention module -> heads per rank, where the module holds a head count.
    replicated: each module with parameters that stays whole on every rank -> why.
    sections: column-parallel modules whose output is several tensors side by side (a fused
        q/k/v projection) -> the section widths; each section is split in n, rank r taking the
        r-th slice of every section.
    indivisible: attention modules whose heads do not divide by n -> message (an error for check).
    """

    n: int
    splits: dict[str, Style] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    replicated: dict[str, str] = field(default_factory=dict)
    sections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    indivisible: dict[str, str] = field(default_factory=dict)
    allreduces: tuple[AllReduce, ...] = ()
    split_params: int = 0            # parameters divided over the n ranks (the rest are whole)
    split_activations: int = 0       # per sample: activations each rank holds 1/n of
    spans: dict[str, Span] = field(default_factory=dict, compare=False, repr=False)

    def per_rank_params(self, total: int) -> int:
        """Parameters one rank holds: the split ones divided by n, the rest whole."""
        return total - self.split_params + -(-self.split_params // self.n)


class _Failed(Exception):
    """A region cannot be split; the message says why (after `linear: ...`)."""


@dataclass
class _Region:
    columns: list[Call] = field(default_factory=list)
    rows: list[Call] = field(default_factory=list)
    attention: list[Call] = field(default_factory=list)
    sharded: set[int] = field(default_factory=set)
    visited: set[int] = field(default_factory=set)
    sections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    queue: list[int] = field(default_factory=list)   # split tensors whose readers are unseen
    problem: str | None = None        # heads that do not divide: the region stays whole

    def linears(self) -> list[Call]:
        return self.columns + self.rows


class _Planner:
    def __init__(self, ir: ModuleDef, n: int):
        self.n, self.g = n, flatten(ir)
        by_leaf = {id(leaf): path for path, leaf in self.g.leaves.items()}
        # a tied weight is one tensor in two layers: it stays whole (the embedding it is tied to
        # keeps its vocabulary whole)
        self.tied: dict[str, str] = {}
        for leaf, _param, src, _span in ir.ties:
            path, target = by_leaf.get(id(leaf)), ".".join(src[:-1])
            if path is not None:
                self.tied[path] = target
                self.tied.setdefault(target, path)
        self.claimed: set[str] = set()
        self.plan = TensorPlan(n)

    # ---- eligibility -------------------------------------------------------------------------
    def _splittable_linear(self, call: Call) -> str | None:
        """Why this call's linear cannot be split (None: it can)."""
        if call.layer.kind != "linear" or call.path is None:
            return f"{call.layer.kind} is not a linear layer"
        if call.path in self.tied:
            return f"{call.path} is tied to {self.tied[call.path]}"
        if self.g.uses.get(call.path, 0) > 1:
            return f"{call.path} is applied more than once"
        if call.path in self.claimed:
            return f"{call.path} is split in another group"
        return None

    # ---- growing a region forward from a column-parallel seed --------------------------------
    def grow(self, seed: Call) -> _Region:
        region = _Region()
        self._column(region, seed)
        while region.queue:
            t = region.queue.pop(0)
            if t in self.g.outputs:
                raise _Failed("its output is the model's output")
            for call in self.g.consumers_of(t):
                if id(call) not in region.visited:
                    self._visit(region, call)
        if not region.rows:
            raise _Failed("no layer sums its split output")
        return region

    def _column(self, region: _Region, call: Call) -> None:
        why = self._splittable_linear(call)
        if why:
            raise _Failed(why)
        width = self.g.types[call.outs[0]].shape[-1]
        if width % self.n:
            raise _Failed(f"its {width} output features do not divide by tensor = {self.n}")
        region.columns.append(call)
        region.visited.add(id(call))
        region.sharded.add(call.outs[0])
        region.queue.append(call.outs[0])

    def _visit(self, region: _Region, call: Call) -> None:
        """Take `call` into the region: it reads a split tensor."""
        kind = call.layer.kind
        if kind == "linear":
            why = self._splittable_linear(call)
            if why:
                raise _Failed(f"its partner {why}")
            region.rows.append(call)
            region.visited.add(id(call))
            return
        region.visited.add(id(call))
        if kind in POINTWISE:
            for t in call.ins:
                if t not in region.sharded:
                    self._pull(region, t, call)
        elif kind == "rotary":
            head_dim = call.layer.head_dim  # type: ignore[attr-defined]
            width = self.g.types[call.ins[0]].shape[-1]
            if (width // self.n) % head_dim:
                raise _Failed(f"rotary's heads of {head_dim} features do not divide over "
                              f"tensor = {self.n}")
        elif kind in ("split", "chunk"):
            self._sections(region, call)
        elif kind in ATTENTION_OPS:
            self._attention(region, call)
        else:
            raise _Failed(f"its split output reaches {kind}, which needs the whole width")
        region.sharded.update(call.outs)
        region.queue += call.outs

    def _pull(self, region: _Region, t: int, at: Call) -> None:
        """Make `t`, another input of a call in the region, split too: it must come from a
        linear that can be column-parallel (SwiGLU's up projection, attention's k and v)."""
        producer = self.g.producer_of(t)
        if producer is None:
            raise _Failed(f"{at.layer.kind} also takes a model input, which is not split")
        kind = producer.layer.kind
        if kind == "linear":
            self._column(region, producer)  # its other readers are visited from the queue
            return
        if (kind in POINTWISE or kind == "rotary") and len(producer.ins) == 1:
            region.visited.add(id(producer))
            self._pull(region, producer.ins[0], producer)
            region.sharded.add(t)
            region.queue.append(t)
            return
        raise _Failed(f"{at.layer.kind} also takes the output of {kind}, which is not split")

    def _sections(self, region: _Region, call: Call) -> None:
        t = self.g.types[call.ins[0]]
        dim = call.layer.dim  # type: ignore[attr-defined]
        if dim % (len(t.shape) + 1) != len(t.shape):
            raise _Failed(f"{call.layer.kind} cuts another dim than the split features")
        sizes = tuple(self.g.types[o].shape[-1] for o in call.outs)
        if any(s % self.n for s in sizes):
            raise _Failed(f"{call.layer.kind} sections {list(sizes)} do not divide by tensor = "
                          f"{self.n}")
        source = self.g.producer_of(call.ins[0])
        if source is None or source not in region.columns:
            raise _Failed(f"{call.layer.kind} cuts a tensor that is not a linear's output")
        region.sections[source.path] = sizes  # type: ignore[index]

    def _attention(self, region: _Region, call: Call) -> None:
        layer = call.layer
        heads, kv = layer.heads, layer.kv_heads or layer.heads  # type: ignore[attr-defined]
        for t in call.ins[:3]:
            if t not in region.sharded:
                self._pull(region, t, call)
        for extra in call.ins[3:]:
            shape = self.g.types[extra].shape
            if self.g.types[extra].dtype == "float" and len(shape) == 3 and shape[0] > 1:
                raise _Failed(f"{layer.kind} adds a bias per head, which is not split")
        if heads % self.n or kv % self.n:
            count = f"{heads} heads" + (f" ({kv} key/value heads)" if kv != heads else "")
            region.problem = region.problem or (f"{layer.kind}: {count} do not divide by "
                                                f"tensor = {self.n}")
        region.attention.append(call)

    # ---- the whole model ----------------------------------------------------------------------
    def run(self) -> TensorPlan:
        reasons: dict[str, str] = {}
        for call in self.g.calls:
            if call.path is None or call.path in self.claimed or call.path in reasons:
                continue
            if call.layer.kind in ATTENTION_UNITS:
                self._unit(call, reasons)
            elif call.layer.kind == "linear":
                self._seed(call, reasons)
        for path, leaf in self.g.leaves.items():
            if path not in self.claimed and leaf.layer.params(leaf.ins):
                self.plan.replicated[path] = reasons.get(path) or _whole(leaf.kind, path,
                                                                          self.tied)
                self.plan.spans[path] = leaf.span
        return self.plan

    def _seed(self, seed: Call, reasons: dict[str, str]) -> None:
        if seed.path in self.tied:
            reasons[seed.path] = f"linear: tied to {self.tied[seed.path]}, which stays whole"
            return
        try:
            region = self.grow(seed)
        except _Failed as err:
            reasons[seed.path] = f"linear: not followed by a row-parallel partner ({err})"
            return
        if region.problem:
            for call in region.linears():
                reasons[call.path] = region.problem
            for call in region.attention:
                where = call.path or call.module
                self.plan.indivisible[where] = region.problem
                self.plan.spans[where] = call.span
            return
        self._commit(region)

    def _commit(self, region: _Region) -> None:
        plan, types = self.plan, self.g.types
        for call in region.columns:
            plan.splits[call.path] = "column"
            params = call.leaf.layer.params(call.leaf.ins)
            plan.__dict__["split_params"] += sum(numel(s) for s in params.values())
        for call in region.rows:
            plan.splits[call.path] = "row"
            params = call.leaf.layer.params(call.leaf.ins)
            plan.__dict__["split_params"] += numel(params["weight"])
            plan.__dict__["allreduces"] += (AllReduce(call.path, "forward",
                                                      numel(types[call.outs[0]].shape)),)
        inputs = {call.ins[0]: call.path for call in region.columns}
        plan.__dict__["allreduces"] += tuple(AllReduce(path, "backward", numel(types[t].shape))
                                             for t, path in inputs.items())
        for call in region.attention:
            plan.heads[call.path or call.module] = call.layer.heads // self.n
        plan.sections.update(region.sections)
        plan.__dict__["split_activations"] += sum(numel(types[t].shape) for t in region.sharded)
        self.claimed.update(call.path for call in region.linears())

    def _unit(self, call: Call, reasons: dict[str, str]) -> None:
        leaf = call.leaf
        unit = attention_unit(leaf.layer, leaf.ins, self.n)
        if call.path in self.tied or self.g.uses.get(call.path, 0) > 1:
            unit = f"{call.layer.kind}: applied more than once (shared weights)"
        if isinstance(unit, str):
            reasons[call.path] = unit
            if "heads" in unit:
                self.plan.indivisible[call.path] = unit
                self.plan.spans[call.path] = call.span
            return
        plan, path = self.plan, call.path
        sub = lambda rel: f"{path}.{rel}" if rel else path  # noqa: E731
        plan.splits.update({sub(k): v for k, v in unit.splits.items()})
        plan.heads.update({sub(k): v for k, v in unit.heads.items()})
        plan.sections.update({sub(k): v for k, v in unit.sections.items()})
        plan.__dict__["split_params"] += unit.split_params
        size = numel(self.g.types[call.ins[0]].shape)
        plan.__dict__["allreduces"] += tuple(AllReduce(path, d, size) for _ in
                                             range(unit.allreduces)
                                             for d in ("forward", "backward"))
        self.claimed.add(path)


def _whole(kind: str, path: str, tied: dict[str, str]) -> str:
    """Why a layer outside every split group stays whole."""
    also = f" (its weight is tied to {tied[path]})" if path in tied else ""
    if kind == "embedding":
        return f"embedding: vocabulary is not split{also}"
    if kind == "position_embedding":
        return f"position_embedding: positions are not split{also}"
    if also:
        return f"{kind}: tied to {tied[path]}, which stays whole"
    return f"{kind}: {_WHY.get(_family(kind), 'not split by tensor parallelism')}"


_WHY = {"norm": "normalizes over the whole width (small: kept on every rank)",
        "conv": "convolutions are not split by tensor parallelism",
        "recurrent": "recurrent layers are not split by tensor parallelism",
        "parameter": "a free tensor, kept on every rank",
        "shifted_window_attention": "its relative position bias is per head; not split"}


def _family(kind: str) -> str:
    if "norm" in kind:
        return "norm"
    if kind.startswith(("conv", "separable_conv")):
        return "conv"
    if kind in ("rnn", "lstm", "gru"):
        return "recurrent"
    return kind


def tensor_plan(ir: ModuleDef, n: int) -> TensorPlan:
    """How `parallel { tensor = n }` splits the model `ir` (see TensorPlan)."""
    if n < 1:
        raise ValueError(f"tensor must be a positive integer, got {n}")
    if n == 1:
        return TensorPlan(1)
    return _Planner(ir, n).run()
