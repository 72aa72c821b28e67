"""The pieces a generated spec is made of, and the types they give.

Every piece is its .nn text plus a function that computes its output types the way `check` does
(each kind's own `infer`), so that a body can be replayed under another binding of its
parameters. `Invalid` says that a drawn piece does not fit; the generator then draws another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ValidationError

from nnspec.layers import REGISTRY, ShapeError, T

from .recipes import Call, Expr

MAX_NUMEL = 400        # no tensor larger than this per sample
MAX_PARAMS = 4000      # nor a layer with more parameters than this


class Invalid(Exception):
    """A drawn piece that does not fit its input types; the generator draws another."""


# ---- text ---------------------------------------------------------------------------------
def lit(v: Any) -> str:
    """A value as .nn source."""
    if isinstance(v, Expr):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    return repr(v)


def render(call: Call, tensors: list[str] = (), keyword: dict[str, str] | None = None) -> str:
    """`kind(tensors..., positional args..., name=value...)`; a kind with nothing to say is bare."""
    args = {k: v for k, v in call.args.items() if v is not None}
    fields = list(REGISTRY[call.kind].model_fields)
    parts = list(tensors)
    positional = 0
    for name in fields[:call.positional]:
        if name not in args:
            break
        parts.append(lit(args.pop(name)))
        positional += 1
    parts += [f"{k}={v}" for k, v in (keyword or {}).items()]
    parts += [f"{k}={lit(v)}" for k, v in args.items()]
    return call.kind if not parts else f"{call.kind}({', '.join(parts)})"


# ---- types --------------------------------------------------------------------------------
def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def infer(call: Call, ins: list[T], bind: dict, keywords: list[str] = ()) -> list[T]:
    """The output types of `call` on `ins` (the last len(keywords) of them by keyword), as the
    checker computes them; Invalid when they do not fit."""
    args = {k: v for k, v in call.bound(bind).items() if v is not None}
    try:
        layer = REGISTRY[call.kind].model_validate(args)
        if ins[0].dtype not in type(layer).input_dtypes:
            raise Invalid(call.kind)
        outs = layer.infer(list(ins))
        if keywords:
            names = [f"a{i}" for i in range(len(ins) - len(keywords))]
            names += [f"{k}=k{i}" for i, k in enumerate(keywords)]
            if getattr(type(layer), "functional_only", False):
                layer.functional_source(names, list(ins))
            else:
                layer.call_source("m", names, list(ins))
        params = layer.params(list(ins))
    except (ValidationError, ShapeError, ValueError, TypeError, ZeroDivisionError):
        raise Invalid(call.kind) from None
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    if call.kind in ("chunk", "split") and len(outs) < 2:
        raise Invalid(call.kind)   # one piece would bind a tuple of one to a name
    if any(not o.shape or numel(o.shape) > MAX_NUMEL or 0 in o.shape for o in outs):
        raise Invalid(call.kind)
    if sum(numel(s) for s in params.values()) > MAX_PARAMS:
        raise Invalid(call.kind)
    return outs


def constructor(layer, ins: list[T]) -> str | None:
    """The source of the module a layer builds (None for a functional op)."""
    return None if getattr(type(layer), "functional_only", False) else layer.init_source(ins)


@dataclass
class Env:
    """The types a body has seen so far, under one binding of its parameters."""

    vars: dict[str, T]
    bind: dict[str, Any]
    # named layers by name: ("leaf", call, input types) or ("mod", input types, output types)
    layers: dict[str, tuple] = field(default_factory=dict)
    drawn: set[str] = field(default_factory=set)

    def copy(self) -> "Env":
        calls = {k: set(v) for k, v in self.bind.get("__calls__", {}).items()}
        bind = {**self.bind, "__calls__": calls} if "__calls__" in self.bind else dict(self.bind)
        return Env(dict(self.vars), bind, dict(self.layers), set(self.drawn))


Effect = Callable[[Env], None]


# ---- stages of a flow ---------------------------------------------------------------------
@dataclass
class Cond:
    text: str
    value: Callable[[Env], bool]


@dataclass
class Stage:
    """One stage of a flow (`-> name: thing when cond`); `apply` gives its output types."""

    text: str
    apply: Callable[[list[T], Env], list[T]]
    name: str | None = None
    cond: Cond | None = None
    spliced: bool = False   # `item * k` inside a list
    before: list[str] = field(default_factory=list)   # texts of stages in front (Call.before)
    list_item: bool = False   # named as an item of a list (loops.name_items), not as a statement

    def full(self) -> str:
        text = f"{self.name}: {self.text}" if self.name else self.text
        # a `when` binds to one stage: each of the stages in front gets it too
        when = f" when {self.cond.text}" if self.cond else ""
        return "".join(f"{b}{when} -> " for b in self.before) + text + when

    def run(self, ins: list[T], env: Env) -> list[T]:
        if self.cond is not None:
            on = self.cond.value(env)
            env.drawn.add("when_true" if on else "when_false")
            if not on:
                return ins
        return self.apply(ins, env)


def call_stage(call: Call, name: str | None = None) -> Stage:
    def apply(ins, env):
        for c in call.before:
            ins = infer(c, ins, env.bind)
        outs = infer(call, ins, env.bind)
        env.drawn.add(call.kind)
        if name:
            env.layers[name] = ("leaf", call, list(ins))
        return outs
    return Stage(render(call), apply, name, before=[render(c) for c in call.before])


# ---- blocks -------------------------------------------------------------------------------
@dataclass
class Block:
    """A block (or an alias) and how to recompute its outputs for other arguments."""

    name: str
    params: list[tuple[str, Any, bool]]      # (name, first value, has a default)
    text: str
    # (input types, arguments, drawn kinds and constructs, dict for its named layers or None)
    outputs: Callable[..., list[T]]
    inputs: int
    in_helper: bool
    depth: int
    alias: bool = False

    def call_text(self, values: dict, tensors: list[str] = ()) -> str:
        parts = list(tensors)
        for name, first, default in self.params:
            if default and values[name] == first:
                continue   # leave out an argument equal to its default
            parts.append(f"{name}={lit(values[name])}" if default else lit(values[name]))
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def weight(call: Call, ins: list[T], bind: dict) -> tuple[int, ...] | None:
    """The shape of the `weight` a layer call has on `ins` (None when it has none)."""
    layer = REGISTRY[call.kind].model_validate(
        {k: v for k, v in call.bound(bind).items() if v is not None})
    return layer.params(ins).get("weight")
