"""The model's forward pass as one flat graph of layer calls over tensors, across block
boundaries: what tensor-parallel analysis walks (a block's attention can feed a projection that
another block owns, as in BERT's AddNorm). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.ir import Leaf, ModuleDef, Op, Seq, Value
from nnspec.lang.diagnostics import Span
from nnspec.place.checkpointing import submodules
from nnspec.layers.base import Layer, T


@dataclass(eq=False)
class Call:
    """One layer applied in the forward pass. `path` is the layer's module path in state_dict
    naming (None for a functional op); `module` is the path of the module whose forward runs it."""

    layer: Layer
    path: str | None
    module: str
    ins: list[int]            # tensor ids, positional first, then keyword ones
    outs: list[int]
    span: Span
    leaf: Leaf | None = None


@dataclass
class Graph:
    calls: list[Call] = field(default_factory=list)
    types: dict[int, T] = field(default_factory=dict)       # tensor id -> type
    producer: dict[int, int] = field(default_factory=dict)  # tensor id -> index of its call
    consumers: dict[int, list[int]] = field(default_factory=dict)
    outputs: set[int] = field(default_factory=set)          # the model's own outputs
    leaves: dict[str, Leaf] = field(default_factory=dict)   # every leaf module by path
    uses: dict[str, int] = field(default_factory=dict)      # calls per leaf path

    def producer_of(self, tensor: int) -> Call | None:
        i = self.producer.get(tensor)
        return None if i is None else self.calls[i]

    def consumers_of(self, tensor: int) -> list[Call]:
        return [self.calls[i] for i in self.consumers.get(tensor, [])]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Builder:
    def __init__(self) -> None:
        self.graph = Graph()
        self.alias: dict[int, int] = {}  # id(Value) -> tensor id
        self.next_id = 0

    def tensor(self, value: Value) -> int:
        found = self.alias.get(id(value))
        if found is None:
            found = self.alias[id(value)] = self.next_id
            self.graph.types[found] = value.type
            self.next_id += 1
        return found

    def bind(self, value: Value, tensor: int) -> None:
        self.alias[id(value)] = tensor

    def new_tensor(self, t: T) -> int:
        self.next_id += 1
        self.graph.types[self.next_id - 1] = t
        return self.next_id - 1

    def add(self, call: Call) -> None:
        index = len(self.graph.calls)
        self.graph.calls.append(call)
        for t in call.outs:
            self.graph.producer[t] = index
        for t in call.ins:
            self.graph.consumers.setdefault(t, []).append(index)
        if call.path is not None and call.leaf is not None:
            self.graph.uses[call.path] = self.graph.uses.get(call.path, 0) + 1

    def module(self, m: ModuleDef, path: str, ins: list[int], kwargs: dict[str, int]) -> list[int]:
        """Inline a block called on these tensors; its output tensors."""
        by_name = dict(zip(m.input_names, m.inputs))
        for value, t in zip(m.inputs, ins):
            self.bind(value, t)
        for name, t in kwargs.items():
            if name in by_name:
                self.bind(by_name[name], t)
        for op in m.ops:
            self.op(m, path, op)
        return [self.tensor(v) for v in m.outputs]

    def op(self, m: ModuleDef, path: str, op: Op) -> None:
        args = [self.tensor(v) for v in op.args]
        kwargs = {k: self.tensor(v) for k, v in op.kwargs.items()}
        if op.target is None:
            assert op.layer is not None, "a functional op has a layer kind"
            outs = [self.tensor(v) for v in op.outs]
            self.add(Call(op.layer, None, path, args + list(kwargs.values()), outs, op.span))
            return
        target_path = _join(path, m.child_name(op.target))
        outs = self.child(op.target, target_path, path, args, kwargs)
        for value, t in zip(op.outs, outs):
            self.bind(value, t)

    def child(self, child, path: str, module: str, args: list[int],
              kwargs: dict[str, int]) -> list[int]:
        if isinstance(child, Leaf):
            out_types = child.layer.infer(child.ins)
            out_types = list(out_types) if isinstance(out_types, tuple) else [out_types]
            outs = [self.new_tensor(t) for t in out_types]
            self.add(Call(child.layer, path, module, args + list(kwargs.values()), outs,
                          child.span, child))
            return outs
        if isinstance(child, ModuleDef):
            return self.module(child, path, args, kwargs)
        return self.seq(child, path, args, kwargs)

    def seq(self, seq: Seq, path: str, args: list[int], kwargs: dict[str, int]) -> list[int]:
        current = args
        for i, item in enumerate(seq.items):
            extra, named = seq.item_args(i)
            item_kwargs = {k: self.tensor(v) for k, v in named.items()}
            if i == 0:
                item_kwargs = {**kwargs, **item_kwargs}
            ins = current + [self.tensor(v) for v in extra]
            item_path = _join(path, seq.item_name(i))
            current = self.child(item, item_path, path, ins, item_kwargs)
        return current


def flatten(root: ModuleDef) -> Graph:
    """The whole forward pass of `root`, every block inlined, in execution order."""
    b = _Builder()
    ins = [b.tensor(v) for v in root.inputs]
    outs = b.module(root, "", ins, {})
    b.graph.outputs = set(outs)
    b.graph.leaves = {path: c for path, _, c in submodules(root) if isinstance(c, Leaf)}
    return b.graph
