"""Walk the checked IR and execute it: module definitions op by op, sequences item by item, each
layer kind through its function in `KINDS` (a plugin's kind through the plugin's, registry.rule).
Parameters come from a state dict by the names the built module gives them (children by their
lowered names, sequence items numbered), tied weights from their tie's source, and a shared layer
is the same child (the same weights) called again."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from nnspec.ir import Child, Leaf, ModuleDef, Seq, child_ins
from nnspec.layers.base import T
from nnspec.ir.lower import lower
from nnspec.interp.registry import Ctx, rule

Trace = Callable[[str, Child, list], None]


class StateError(KeyError):
    """The state dict lacks a tensor the IR needs."""


class InterpError(RuntimeError):
    """A layer could not run, or computed another type than the checked IR says; the message
    starts with the spec line and names the layer."""


def execute(root: ModuleDef, state: Mapping[str, torch.Tensor], inputs: Sequence[torch.Tensor],
            trace: Trace | None = None) -> list[torch.Tensor]:
    """Eval-mode forward of `root`; `trace(path, child, outputs)` is called after each child."""
    if len(inputs) != len(root.inputs):
        raise ValueError(f"{root.name} takes {len(root.inputs)} inputs, got {len(inputs)}")
    lower(root)  # names unnamed children as the built module does (keeps names already given)
    aliases: dict[str, str] = {}
    _collect_ties(root, "", aliases)
    run = _Run(state, aliases, _float_dtype(state, inputs), trace)
    with torch.no_grad():
        return run.module(root, "", list(inputs))


def _float_dtype(state, inputs) -> torch.dtype:
    """The run computes in the float dtype of its weights (else of its inputs)."""
    for t in list(state.values()) + list(inputs):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _join(prefix: str, name: str) -> str:
    if not name:
        return prefix
    return f"{prefix}.{name}" if prefix else name


def _collect_ties(child: Child, prefix: str, aliases: dict[str, str]) -> None:
    """Full name of each tied parameter -> full name of its source (ModuleDef.ties paths are
    relative to the module that holds the tie)."""
    if isinstance(child, Seq):
        for i, item in enumerate(child.items):
            _collect_ties(item, _join(prefix, child.item_name(i)), aliases)
    elif isinstance(child, ModuleDef):
        for name, c in child.children:
            _collect_ties(c, _join(prefix, name), aliases)
        for leaf, param, src, _ in child.ties:
            aliases[_join(_join(prefix, child.child_name(leaf)), param)] = _join(prefix,
                                                                                 ".".join(src))


class _Run:
    def __init__(self, state, aliases, float_dtype, trace):
        self.state, self.aliases, self.float_dtype, self.trace = state, aliases, float_dtype, trace

    def tensor(self, name: str) -> torch.Tensor:
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        if name not in self.state:
            raise StateError(f"the state has no tensor `{name}`")
        return self.state[name]

    def module(self, m: ModuleDef, prefix: str, inputs: list) -> list:
        env: dict[int, torch.Tensor] = {id(v): t for v, t in zip(m.inputs, inputs)}
        for op in m.ops:
            args = [env[id(v)] for v in op.args]
            kwargs = {k: env[id(v)] for k, v in op.kwargs.items()}
            types = [v.type for v in op.args] + [v.type for v in op.kwargs.values()]
            if op.target is None:
                path = _join(prefix, f"({op.layer.kind})")
                outs = self.layer(op.layer, {}, args, kwargs, types, op.span, path)
            else:
                path = _join(prefix, m.child_name(op.target))
                outs = self.child(op.target, path, args, kwargs, types, env)
            _check_types(outs, [v.type for v in op.outs], op.span, op.layer or op.target, path)
            for v, t in zip(op.outs, outs):
                env[id(v)] = t
        return [env[id(v)] for v in m.outputs]

    def child(self, c: Child, path: str, args: list, kwargs: dict, types: list[T],
              env: dict) -> list:
        if isinstance(c, Leaf):
            outs = self.layer(c.layer, self.weights(c, path), args, kwargs, types, c.span, path)
        elif isinstance(c, Seq):
            outs = self.seq(c, path, args, env)
        else:
            outs = self.module(c, path, args)
        if self.trace is not None:
            self.trace(path, c, outs)
        return outs

    def seq(self, s: Seq, path: str, args: list, env: dict) -> list:
        # the first item takes the sequence's inputs, each later one the previous result; both
        # are followed by the item's extra tensors (a mask given to every layer of a repeat),
        # the ones the spec named by keyword bound by that name
        cur = list(args)
        for i, item in enumerate(s.items):
            pos, kw = s.item_args(i)
            ins = cur + [env[id(v)] for v in pos]
            kwargs = {k: env[id(v)] for k, v in kw.items()}
            cur = self.child(item, _join(path, s.item_name(i)), ins, kwargs, list(child_ins(item)), env)
            if isinstance(item, Leaf):
                want = item.layer.infer(item.ins)
                _check_types(cur, list(want) if isinstance(want, tuple) else [want], item.span,
                             item.layer, _join(path, s.item_name(i)))
        return cur

    def weights(self, leaf: Leaf, path: str) -> dict[str, torch.Tensor]:
        names = list(leaf.layer.params(leaf.ins)) + list(leaf.layer.buffers(leaf.ins))
        return {n: self.tensor(_join(path, n)) for n in names}

    def layer(self, layer, w, args, kwargs, types, span, path) -> list:
        fn = rule(layer.kind)
        if fn is None:
            raise NotImplementedError(f"the interpreter has no rule for layer kind `{layer.kind}`")
        try:
            out = fn(layer, w, args, kwargs, Ctx(list(types), self.float_dtype))
        except Exception as err:
            raise InterpError(f"{_where(span)}: {layer.kind} `{path}` fails: "
                              f"{type(err).__name__}: {err}") from err
        return list(out) if isinstance(out, (tuple, list)) else [out]


def _where(span) -> str:
    return f"{span.source.name}:{span.line}"


def _spec_type(t: torch.Tensor) -> T:
    dtype = "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "long"
    return T(tuple(t.shape[1:]), dtype)


def _check_types(outs: list, want: list[T], span, what, path: str) -> None:
    """The checked IR promises each value's per-sample shape and dtype; hold it to that."""
    got = [_spec_type(t) for t in outs]
    if got != want:
        kind = getattr(what, "kind", None) or getattr(what, "name", "sequential")
        raise InterpError(f"{_where(span)}: {kind} `{path}` computes "
                          f"{', '.join(map(str, got))}, but the checked IR says "
                          f"{', '.join(map(str, want))}")
