"""The IR the emitters share: a tree of module definitions, each with its children and the ops of
its forward pass over SSA tensor values with known per-sample types."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from nnspec.lang.diagnostics import Span
from nnspec.layers.base import Layer, T, numel


@dataclass(eq=False)
class Value:
    """One tensor in a forward pass; `hint` is the variable name it would like in generated code."""

    type: T
    hint: str


@dataclass(eq=False)
class Leaf:
    """A child module that is one layer kind, built for these input types."""

    layer: Layer
    ins: list[T]
    span: Span

    @property
    def kind(self) -> str:
        return self.layer.kind


@dataclass(eq=False)
class Seq:
    """An nn.Sequential (or ModuleList) of children, applied one after another."""

    items: list["Child"]
    # per item: tensors passed after the chained one (e.g. a mask), positional ones first,
    # then the keyword ones (named in `keywords`)
    extras: list[list[Value]]
    ins: list[T]
    span: Span
    out: T | None = None       # the last item's output type, set by check
    # per item: the names of its keyword tensors, the last len(names) of its extras. A layer
    # binds a tensor by its name (a decoder's memory mask has the target mask's type when the
    # lengths agree), so dropping the names would bind it to another input.
    keywords: list[tuple[str, ...]] = field(default_factory=list)
    # per item: the name the spec gave it (`[conv0: conv2d(64, 7), ...]`), or None for one that
    # is numbered by its position, as nn.Sequential numbers them
    names: list[str | None] = field(default_factory=list)
    # every output type when the items pass several tensors on (`in x, bias` ... `out x, bias`):
    # each item's outputs are the next one's inputs, and the last one's are the list's
    outs: list[T] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keywords = list(self.keywords) + [()] * (len(self.items) - len(self.keywords))
        self.names = list(self.names) + [None] * (len(self.items) - len(self.names))

    def item_name(self, i: int) -> str:
        """Item i's attribute name in the nn.Sequential: its given name, else its position."""
        name = self.names[i]
        return str(i) if name is None else name

    @property
    def named(self) -> bool:
        """Whether any item has a name of its own (emitted with add_module, not positionally)."""
        return any(n is not None for n in self.names)

    def item_args(self, i: int) -> tuple[list[Value], dict[str, Value]]:
        """Item i's extra tensors: (positional ones, keyword ones by name)."""
        extra, names = self.extras[i], self.keywords[i]
        split = len(extra) - len(names)
        return list(extra[:split]), dict(zip(names, extra[split:]))


@dataclass(eq=False)
class Op:
    """One step of a forward pass: a child module call, or a functional layer."""

    target: Union["Child", None]  # the child called; None for a functional op
    layer: Layer | None            # the layer kind of a functional op (or of a Leaf target)
    args: list[Value]
    kwargs: dict[str, Value]
    outs: list[Value]
    span: Span
    reuse: bool = False            # the spec applied an existing named layer again (shared weights)


@dataclass(eq=False)
class ModuleDef:
    """One nn.Module: the model, or a block instantiated with concrete arguments and input types."""

    name: str                      # the block/model name; generated classes are named after it
    signature: str                 # e.g. "BasicBlock(planes=64, stride=1)"
    span: Span
    children: list[tuple[str | None, "Child"]] = field(default_factory=list)
    inputs: list[Value] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    # (leaf, param, src path, span): `leaf.param` is `src`'s tensor. In a block, leaf and src are
    # this module's (src relative to it); in the root, the leaf may be a descendant any number of
    # blocks deep and src is a path from the root (`tie=` of a model layer passed to a block)
    ties: list[tuple["Leaf", str, list[str], Span]] = field(default_factory=list)
    # ties of a leaf of this module to a layer outside it (passed in as a block argument), by the
    # target object: check moves them to the root's `ties` once every name is settled (hoist_ties)
    outer_ties: list[tuple["Leaf", str, "Child", Span]] = field(default_factory=list)

    def child_name(self, child: "Child") -> str:
        """The attribute path of a child, or of a layer inside a child block that the spec reused
        by its path (`x -> a.fc`): "a.fc". Names are settled by lower.name_children."""
        names = self.__dict__.get("_names")
        if names is None or len(names) != len(self.children):
            names = self.__dict__["_names"] = {id(c): n for n, c in self.children}
        name = names.get(id(child))
        if name is None:
            name = self._descendant_path(child)
        assert name is not None, "every child is named when check() returns"
        return name

    def _descendant_path(self, child: "Child") -> str | None:
        for name, c in self.children:
            if name is not None:
                inner = _path_below(c, child)
                if inner is not None:
                    return f"{name}.{inner}"
        return None


def _path_below(holder: "Child", child: "Child") -> str | None:
    """The path of `child` inside `holder` (a block or a list), or None when it is not there."""
    if isinstance(holder, ModuleDef):
        if any(x is child for _, x in holder.children):
            return holder.child_name(child)
        return holder._descendant_path(child)
    if isinstance(holder, Seq):
        for i, item in enumerate(holder.items):
            if item is child:
                return holder.item_name(i)
            inner = _path_below(item, child)
            if inner is not None:
                return f"{holder.item_name(i)}.{inner}"
    return None


Child = Union[Leaf, Seq, ModuleDef]


def clone(child: Child, memo: dict[int, object] | None = None) -> Child:
    """A copy of `child` with its own modules and tensor values (layers and spans are shared: they
    are never changed after check). Every call of a block is its own module, because the passes
    after check tell modules apart by identity; objects shared inside `child` stay shared."""
    memo = {} if memo is None else memo
    found = memo.get(id(child))
    if found is not None:
        return found  # type: ignore[return-value]
    if isinstance(child, Leaf):
        new: Child = Leaf(child.layer, list(child.ins), child.span)
    elif isinstance(child, Seq):
        new = Seq([clone(c, memo) for c in child.items],
                  [[_clone_value(v, memo) for v in e] for e in child.extras],
                  list(child.ins), child.span, child.out, list(child.keywords), list(child.names))
    else:
        new = ModuleDef(child.name, child.signature, child.span)
        memo[id(child)] = new  # before the children: a tie or an op may refer back
        new.children = [(n, clone(c, memo)) for n, c in child.children]
        new.inputs = [_clone_value(v, memo) for v in child.inputs]
        new.input_names = list(child.input_names)
        new.ops = [Op(None if op.target is None else clone(op.target, memo), op.layer,
                      [_clone_value(v, memo) for v in op.args],
                      {k: _clone_value(v, memo) for k, v in op.kwargs.items()},
                      [_clone_value(v, memo) for v in op.outs], op.span, op.reuse)
                   for op in child.ops]
        new.outputs = [_clone_value(v, memo) for v in child.outputs]
        new.ties = [(clone(leaf, memo), param, list(src), span)  # type: ignore[misc]
                    for leaf, param, src, span in child.ties]
        # a target outside the copied module stays the one layer every copy ties to (N calls of
        # a block share the model's layer); one copied along with it is its copy
        new.outer_ties = [(clone(leaf, memo), param, memo.get(id(target), target), span)  # type: ignore[misc]
                          for leaf, param, target, span in child.outer_ties]
    memo[id(child)] = new
    return new


def hoist_ties(root: ModuleDef) -> None:
    """Move every module's `outer_ties` to the root's `ties`, with the target's path from the
    root. Runs after the children are named, as the paths the emitters print need the names."""
    paths: dict[int, str] = {}

    def walk(child: Child, prefix: str) -> None:
        paths[id(child)] = prefix
        if isinstance(child, Seq):
            for i, item in enumerate(child.items):
                walk(item, f"{prefix}.{child.item_name(i)}" if prefix else child.item_name(i))
        elif isinstance(child, ModuleDef):
            for name, c in child.children:
                walk(c, f"{prefix}.{name}" if prefix else str(name))
            for leaf, param, target, span in child.outer_ties:
                found.append((leaf, param, target, span))
            child.outer_ties = []

    found: list[tuple[Leaf, str, Child, Span]] = []
    walk(root, "")
    for leaf, param, target, span in found:
        assert id(target) in paths and id(leaf) in paths, "a tie's layers are in the tree"
        root.ties.append((leaf, param, paths[id(target)].split(".") + [param], span))


def _clone_value(v: Value, memo: dict[int, object]) -> Value:
    found = memo.get(id(v))
    if found is None:
        found = memo[id(v)] = Value(v.type, v.hint)
    return found  # type: ignore[return-value]


def verify_identities(root: ModuleDef) -> None:
    """The invariant the passes after check rely on, checked: no module object is reachable twice
    through children (each block call is its own instance), and a module's ops call one child
    more than once only where the spec reused that named layer. A violation is a compiler bug:
    it would compile two layers into one, silently."""
    seen: set[int] = set()

    def walk(child: Child) -> None:
        if id(child) in seen:
            raise AssertionError(f"internal error: {_what(child)} is a child twice")
        seen.add(id(child))
        if isinstance(child, Seq):
            for item in child.items:
                walk(item)
        elif isinstance(child, ModuleDef):
            for _, c in child.children:
                walk(c)
            called: set[int] = set()
            for op in child.ops:
                if op.target is None:
                    continue
                if id(op.target) in called and not op.reuse:
                    raise AssertionError(f"internal error: {_what(op.target)} is called twice in "
                                         f"{child.signature} without being reused by name")
                called.add(id(op.target))

    walk(root)


def _what(child: Child) -> str:
    return child.signature if isinstance(child, ModuleDef) else type(child).__name__.lower()


def child_ins(child: Child) -> list[T]:
    return child.ins if isinstance(child, (Leaf, Seq)) else [v.type for v in child.inputs]


def iter_params(child: Child, prefix: str = ""):
    """(state_dict name, shape) of every parameter a child owns, before tying."""
    if isinstance(child, Leaf):
        for name, shape in child.layer.params(child.ins).items():
            yield (f"{prefix}.{name}" if name and prefix else name or prefix), shape
    elif isinstance(child, Seq):
        for i, item in enumerate(child.items):
            name = child.item_name(i)
            yield from iter_params(item, f"{prefix}.{name}" if prefix else name)
    else:
        for name, c in child.children:
            yield from iter_params(c, f"{prefix}.{name}" if prefix else str(name))


def count_params(child: Child) -> int:
    """Unique parameters: a weight tied to another counts once."""
    total = sum(numel(s) for _, s in iter_params(child))
    return total - tied_params(child)


def largest_layer(child: Child | None) -> int:
    """The most parameters one module holds directly (DeepSpeed's view of a layer: what ZeRO-3
    gathers at once), before tying."""
    if child is None:
        return 0
    if isinstance(child, Leaf):
        return sum(numel(s) for s in child.layer.params(child.ins).values())
    if isinstance(child, Seq):
        return max((largest_layer(c) for c in child.items), default=0)
    return max((largest_layer(c) for _, c in child.children), default=0)


def tied_params(child: Child) -> int:
    if isinstance(child, Leaf):
        return 0
    if isinstance(child, Seq):
        return sum(tied_params(c) for c in child.items)
    own = sum(numel(leaf.layer.params(leaf.ins)[param]) for leaf, param, _, _ in child.ties)
    return own + sum(tied_params(c) for _, c in child.children)
