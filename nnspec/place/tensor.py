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


@dataclass
class Share:
    """What a layer (or the functional ops of a module) puts in 1/n per rank, per sample."""

    params: int = 0
    activations: int = 0             # float elements of the outputs kept for backward
    flops: int = 0                   # forward FLOPs

    def add(self, other: "Share") -> None:
        self.params += other.params
        self.activations += other.activations
        self.flops += other.flops


@dataclass(frozen=True)
class TensorPlan:
    """How `parallel { tensor = n }` splits a model. Paths are module paths in the built model's
    state_dict naming.

    splits: each split module -> column (its output features, and its own in_proj for an attention
        module) or row (its input features; its bias stays whole).
    heads: attention module -> heads per rank, where the module holds a head count (the module
        whose forward calls a functional attention, or the attention layer itself).
    replicated: each module with parameters that stays whole on every rank -> why.
    sections: column-parallel modules whose output is several tensors side by side (a fused
        q/k/v projection) -> the section widths; each section is split in n, rank r taking the
        r-th slice of every section.
    indivisible: attention modules whose heads do not divide by n -> why (check's error).
    allreduces: the all-reduces the split adds per sample (forward and backward).
    shares: by layer path (a functional op by its module's path): what is split n ways.
    """

    n: int
    splits: dict[str, Style] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    replicated: dict[str, str] = field(default_factory=dict)
    sections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    indivisible: dict[str, str] = field(default_factory=dict)
    allreduces: tuple[AllReduce, ...] = ()
    shares: dict[str, Share] = field(default_factory=dict, repr=False)
    spans: dict[str, Span] = field(default_factory=dict, compare=False, repr=False)

    def share_under(self, prefix: str) -> Share:
        """The split part of a module and everything inside it ("" for the whole model)."""
        total = Share()
        for path, share in self.shares.items():
            if not prefix or path == prefix or path.startswith(prefix + "."):
                total.add(share)
        return total

    def per_rank_params(self, total: int) -> int:
        """Parameters one rank holds: the split ones divided by n, the rest whole."""
        split = self.share_under("").params
        return total - split + -(-split // self.n)


class _Failed(Exception):
    """A region cannot be split; the message says why (after `linear: ...`)."""


@dataclass
class _Region:
    columns: list[Call] = field(default_factory=list)
    rows: list[Call] = field(default_factory=list)
    attention: list[Call] = field(default_factory=list)
    sharded: set[int] = field(default_factory=set)
    inner: list[Call] = field(default_factory=list)   # the calls between columns and rows
    visited: set[int] = field(default_factory=set)
    sections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    queue: list[int] = field(default_factory=list)   # split tensors whose readers are unseen
    # widths (or an attention's heads) that do not divide by n: the region stays whole
    problems: list[str] = field(default_factory=list)
    head_problems: list[str] = field(default_factory=list)

    def linears(self) -> list[Call]:
        return self.columns + self.rows

    def problem(self) -> str | None:
        return (self.head_problems or self.problems or [None])[0]


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
        if why or id(call) in region.visited:
            raise _Failed(why or f"{call.path} would take and make split tensors")
        width = self.g.types[call.outs[0]].shape[-1]
        if width % self.n:
            region.problems.append(f"linear: its {width} output features do not divide by "
                                   f"tensor = {self.n}")
        region.columns.append(call)
        region.visited.add(id(call))
        region.sharded.add(call.outs[0])
        region.queue.append(call.outs[0])

    def _visit(self, region: _Region, call: Call) -> None:
        """Take `call` into the region: it reads a split tensor."""
        kind = call.layer.kind
        region.visited.add(id(call))
        if kind == "linear":
            why = self._splittable_linear(call)
            if why:
                raise _Failed(f"its partner {why}")
            region.rows.append(call)
            return
        if kind in POINTWISE:
            for t in call.ins:
                if t not in region.sharded:
                    self._pull(region, t, call)
        elif kind == "rotary":
            self._rotary(region, call)
        elif kind in ("split", "chunk"):
            self._sections(region, call)
        elif kind in ATTENTION_OPS:
            self._attention(region, call)
        else:
            raise _Failed(f"its split output reaches {kind}, which needs the whole width")
        region.inner.append(call)
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
            if kind == "rotary":
                self._rotary(region, producer)
            region.visited.add(id(producer))
            self._pull(region, producer.ins[0], producer)
            region.inner.append(producer)
            region.sharded.add(t)
            region.queue.append(t)
            return
        raise _Failed(f"{at.layer.kind} also takes the output of {kind}, which is not split")

    def _rotary(self, region: _Region, call: Call) -> None:
        head_dim = call.layer.head_dim  # type: ignore[attr-defined]
        width = self.g.types[call.ins[0]].shape[-1]
        if width % (head_dim * self.n):
            region.problems.append(f"rotary: {width} features are not tensor = {self.n} slices "
                                   f"of whole {head_dim}-feature heads")

    def _sections(self, region: _Region, call: Call) -> None:
        t = self.g.types[call.ins[0]]
        dim = call.layer.dim  # type: ignore[attr-defined]
        if dim % (len(t.shape) + 1) != len(t.shape):
            raise _Failed(f"{call.layer.kind} cuts another dim than the split features")
        source = self.g.producer_of(call.ins[0])
        if source is None or source not in region.columns:
            raise _Failed(f"{call.layer.kind} cuts a tensor that is not a linear's output")
        sizes = tuple(self.g.types[o].shape[-1] for o in call.outs)
        if any(size % self.n for size in sizes):
            region.problems.append(f"linear: its sections {list(sizes)} do not divide by "
                                   f"tensor = {self.n}")
        region.sections[source.path] = sizes  # type: ignore[index]

    def _attention(self, region: _Region, call: Call) -> None:
        layer = call.layer
        heads, kv = layer.heads, layer.kv_heads or layer.heads  # type: ignore[attr-defined]
        for t in call.ins[:3]:
            if t not in region.sharded:
                self._pull(region, t, call)
        for extra in call.ins[3:]:
            t = self.g.types[extra]
            if t.dtype == "float" and len(t.shape) == 3 and t.shape[0] > 1:
                raise _Failed(f"{layer.kind} adds a bias per head, which is not split")
        if heads % self.n or kv % self.n:
            count = f"{heads} heads" if heads % self.n else f"{kv} key/value heads"
            region.head_problems.append(f"{layer.kind}: {count} do not divide by "
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
        problem = region.problem()
        if problem is None:
            self._commit(region)
            return
        for call in region.linears():
            reasons[call.path] = problem
        if region.head_problems:
            for call in region.attention:
                where = call.path or call.module
                self.plan.indivisible[where] = problem
                self.plan.spans[where] = call.span

    def _share(self, call: Call) -> Share:
        where = call.path or call.module
        share = self.plan.shares.get(where)
        if share is None:
            share = self.plan.shares[where] = Share()
        return share

    def _flops(self, call: Call) -> int:
        return call.layer.flops([self.g.types[t] for t in call.ins],
                                tuple(self.g.types[t] for t in call.outs))

    def _commit(self, region: _Region) -> None:
        plan, types = self.plan, self.g.types
        allreduces = []
        for call in region.columns:
            plan.splits[call.path] = "column"
            params = call.leaf.layer.params(call.leaf.ins)
            self._share(call).add(Share(sum(numel(s) for s in params.values()),
                                        numel(types[call.outs[0]].shape), self._flops(call)))
        for call in region.rows:
            plan.splits[call.path] = "row"
            weight = call.leaf.layer.params(call.leaf.ins)["weight"]
            self._share(call).add(Share(numel(weight), 0, self._flops(call)))
            allreduces.append(AllReduce(call.path, "forward", numel(types[call.outs[0]].shape)))
        for call in region.inner:
            views = call.layer.kind in ("split", "chunk")  # views of their input: no new memory
            acts = 0 if views else sum(numel(types[t].shape) for t in call.outs)
            self._share(call).add(Share(0, acts, self._flops(call)))
        inputs = {call.ins[0]: call.path for call in region.columns}
        allreduces += [AllReduce(path, "backward", numel(types[t].shape))
                       for t, path in inputs.items()]
        object.__setattr__(plan, "allreduces", plan.allreduces + tuple(allreduces))
        for call in region.attention:
            plan.heads[call.path or call.module] = call.layer.heads // self.n
        plan.sections.update(region.sections)
        self.claimed.update(call.path for call in region.linears())

    def _unit(self, call: Call, reasons: dict[str, str]) -> None:
        unit = attention_unit(call.layer, call.leaf.ins, self.n)
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
        self._share(call).add(Share(unit.split_params, 0, self._flops(call)))
        size = numel(self.g.types[call.ins[0]].shape)
        object.__setattr__(plan, "allreduces", plan.allreduces + tuple(
            AllReduce(path, d, size) for _ in range(unit.allreduces)
            for d in ("forward", "backward")))
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


def head_counts(ir: ModuleDef) -> list[int]:
    """Every distinct number of heads (and key/value heads) of the model's attention layers:
    the tensor degrees that split them all divide each."""
    counts: list[int] = []
    for call in flatten(ir).calls:
        layer = call.layer
        if layer.kind not in ATTENTION_OPS and layer.kind not in ATTENTION_UNITS:
            continue
        found = [getattr(layer, a, None) for a in ("heads", "kv_heads", "num_heads", "nhead")]
        counts += [c for c in found if isinstance(c, int) and c not in counts]
    return counts
