"""Random valid .nn specs, drawn by hypothesis from every layer kind and every language construct.

`specs()` is a strategy of `Generated` specs: a main file (and sometimes a helper file that it
includes with `use`) holding constants, blocks (called several times with equal and with
different arguments, nested, aliases), and one model (parameters with defaults, several inputs
and outputs, flows, lists, repeats, `when` true and false, shared layers, tied weights, branches
merged by split, chunk, cat, +, -, *, / and @, local constants, keyword tensors).

The generator is valid by construction: it tracks the type of every tensor it writes, running
each kind's own `infer` on the arguments it draws (recipes.py says how to draw them), and records
every statement as its text plus a function that recomputes its types. A block is generated for
its first call; a further call with other arguments or input types replays the block's
statements under the new binding and is kept only if they still fit. A generated spec that
`nnspec check` refuses is a bug of this module.

`Generated.drawn` names the kinds and constructs that the spec actually exercises (a layer in a
`when false` stage is not counted), so that a test can assert that a run covers all of them.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st
from pydantic import ValidationError

import nnspec
from nnspec.layers import REGISTRY, ShapeError, T

from .harness import check_spec
from .recipes import RECIPES, Call, Draw, Expr, Extra, Recipe

HELPER = "helper.nn"
MAX_NUMEL = 400        # no tensor larger than this per sample
CONSTRUCTS = frozenset({
    "block_same_args", "block_different_args", "block_nested", "block_alias", "block_two_inputs",
    "block_default_param", "repeat_layer", "repeat_list", "list", "when_true", "when_false",
    "const", "local_const", "model_param", "tie", "shared_layer", "shared_block", "split", "chunk",
    "cat", "add", "sub", "mul", "div", "matmul", "several_inputs", "several_outputs",
    "implicit_output", "include", "keyword_tensor", "tensor_call", "tensor_number", "out_flow",
    "block_several_outputs"})


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
    if sum(numel(s) for s in params.values()) > 4000:
        raise Invalid(call.kind)
    return outs


def _constructor(layer, ins: list[T]) -> str | None:
    return None if getattr(type(layer), "functional_only", False) else layer.init_source(ins)


@dataclass
class Env:
    """The types a body has seen so far, under one binding of its parameters."""

    vars: dict[str, T]
    bind: dict[str, Any]
    layers: dict[str, tuple] = field(default_factory=dict)   # name -> ("leaf", call, ins) | ("mod", ins)
    drawn: set[str] = field(default_factory=set)


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

    def full(self) -> str:
        text = f"{self.name}: {self.text}" if self.name else self.text
        return f"{text} when {self.cond.text}" if self.cond else text

    def run(self, ins: list[T], env: Env) -> list[T]:
        if self.cond is not None:
            on = self.cond.value(env)
            env.drawn.add("when_true" if on else "when_false")
            if not on:
                return ins
        return self.apply(ins, env)


def call_stage(call: Call, name: str | None = None) -> Stage:
    def apply(ins, env):
        outs = infer(call, ins, env.bind)
        env.drawn.add(call.kind)
        if name:
            env.layers[name] = ("leaf", call, list(ins))
        return outs
    return Stage(render(call), apply, name)


# ---- blocks -------------------------------------------------------------------------------
@dataclass
class Block:
    """A block (or an alias) and how to recompute its outputs for other arguments."""

    name: str
    params: list[tuple[str, Any, bool]]      # (name, first value, has a default)
    text: str
    outputs: Callable[[list[T], dict, set], list[T]]   # (input types, arguments, drawn)
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


# ---- the generator ------------------------------------------------------------------------
class Builder:
    """Draws one spec. Bodies are written by `Body`; top-level definitions are collected here."""

    def __init__(self, draw: Draw):
        self.draw = draw
        self.consts: list[tuple[str, str, Any]] = []   # (name, text, value)
        self.blocks: list[Block] = []
        self.counter = 0
        self.includes = draw(st.booleans())
        self.drawn: set[str] = set()

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> Expr:
        name = self.fresh("K")
        if isinstance(value, int) and not isinstance(value, bool) and value > 1 and value % 2 == 0 \
                and self.draw(st.booleans()):
            text = f"{value // 2} * 2"
        else:
            text = lit(value)
        self.consts.append((name, text, value))
        self.drawn.add("const")
        return Expr(name, lambda bind, v=value: v)   # a constant means the same everywhere

    def const_values(self) -> dict:
        return {name: value for name, _, value in self.consts}

    def text(self, model: str) -> tuple[str, str | None]:
        main, helper = [], []
        if self.includes and any(b.in_helper for b in self.blocks):
            main.append(f'use "{HELPER}"')
            self.drawn.add("include")
        main += [f"const {n} = {t}" for n, t, _ in self.consts]
        for b in self.blocks:
            (helper if b.in_helper else main).append(b.text)
        main.append(model)
        return "\n".join(main) + "\n", ("\n".join(helper) + "\n" if helper else None)


class Body:
    """One model or block body: its lines, and an effect per line that recomputes its types."""

    def __init__(self, b: Builder, env: Env, depth: int, in_helper: bool, params: dict):
        self.b, self.draw = b, b.draw
        self.env = env
        self.depth = depth                 # 0: the model; blocks nest below it
        self.in_helper = in_helper         # a helper-file block sees no main-file constants
        self.params = params               # name -> "int" | "bool": what Exprs may name
        self.lines: list[str] = []
        self.effects: list[Effect] = []
        self.unused: list[str] = list(env.vars)
        self.cursor = list(env.vars)[-1]
        self.last_single: str | None = None   # the variable the last statement alone assigned
        self.alias = False                     # an alias's conditions cannot name tensors

    # -- bookkeeping
    def emit(self, line: str, effect: Effect) -> None:
        effect(self.env)             # raises Invalid before anything is recorded
        self.lines.append(line)
        self.effects.append(effect)

    def use(self, var: str) -> None:
        if var in self.unused:
            self.unused.remove(var)

    def new_var(self, var: str, single: bool = True) -> None:
        self.unused.append(var)
        self.cursor = var
        self.last_single = var if single else None

    def pick_var(self, floats_only: bool = False) -> str:
        options = [v for v, t in self.env.vars.items() if t.dtype == "float" or not floats_only]
        fresh = [v for v in options if v in self.unused]
        if self.cursor in options and self.draw(st.booleans()):
            return self.cursor
        return self.draw(st.sampled_from(fresh if fresh and self.draw(st.integers(0, 3)) else options))

    # -- values in arguments and conditions
    def int_expr(self, value: int) -> Any:
        """`value` as a literal, a constant, a model parameter or a block parameter."""
        choice = self.draw(st.integers(0, 5))
        if choice == 0 and not self.in_helper:
            expr = self.b.const(value)
            self.env.bind[expr.text] = value
            return expr
        named = [p for p, kind in self.params.items() if kind == "int"]
        if choice in (1, 2) and named:
            name = self.draw(st.sampled_from(named))
            return Expr(name, lambda bind, n=name: bind[n])
        return value

    def cond(self) -> Cond:
        options = ["lit"]
        if any(k == "bool" for k in self.params.values()):
            options.append("flag")
        if any(k == "int" for k in self.params.values()):
            options.append("compare")
        if not self.alias:
            options.append("shape")
        pick = self.draw(st.sampled_from(options))
        if pick == "flag":
            name = self.draw(st.sampled_from([p for p, k in self.params.items() if k == "bool"]))
            neg = self.draw(st.booleans())
            return Cond(("not " if neg else "") + name, lambda e: (not e.bind[name]) if neg else e.bind[name])
        if pick == "compare":
            name = self.draw(st.sampled_from([p for p, k in self.params.items() if k == "int"]))
            k = self.draw(st.integers(1, 5))
            return Cond(f"{name} > {k}", lambda e: e.bind[name] > k)
        if pick == "shape":
            var = self.draw(st.sampled_from(list(self.env.vars)))
            k = self.draw(st.integers(1, 4))
            if self.draw(st.booleans()):
                return Cond(f"channels({var}) == {k}", lambda e: e.vars[var].shape[0] == k)
            return Cond(f"ndim({var}) != {k}", lambda e: len(e.vars[var].shape) + 1 != k)
        v = self.draw(st.booleans())
        return Cond(lit(v), lambda e: v)

    # -- one layer call for an input type
    def recipe_for(self, t: T, sequential: bool) -> Recipe | None:
        options = [r for r in RECIPES.values() if r.fits(t) and (r.sequential or not sequential)]
        if not options:
            return None
        return self.draw(st.sampled_from(sorted(options, key=lambda r: r.kind)))

    def draw_call(self, t: T, sequential: bool, allow_extras: bool) -> Call | None:
        for _ in range(4):
            recipe = self.recipe_for(t, sequential)
            if recipe is None:
                return None
            args = recipe.args(self.draw, t)
            if args is None:
                continue
            call = Call(recipe.kind, args, positional=self.draw(st.integers(0, 2)))
            extras = recipe.extras(self.draw, t, args)
            if extras and not allow_extras:
                continue
            call.extras = extras
            try:
                self.check_call(call, t)
            except Invalid:
                continue
            if recipe.width and isinstance(args.get(recipe.width), int):
                self.parameterize(call, recipe.width, t)
            return call
        return None

    def check_call(self, call: Call, t: T) -> list[T]:
        ins, keywords = [t], []
        for extra in call.extras:
            x = t
            for c in extra.chain:
                (x,) = infer(c, [x], {})
            ins.append(x)
            if extra.keyword:
                keywords.append(extra.keyword)
        return infer(call, ins, self.env.bind, keywords)

    def parameterize(self, call: Call, width: str, t: T) -> None:
        """Write the width as a constant or a parameter sometimes; keep it if it still fits."""
        old = call.args[width]
        call.args[width] = self.int_expr(old)
        try:
            self.check_call(call, t)
        except Invalid:
            call.args[width] = old

    # -- statements
    def stage(self, t: T, env: Env) -> Stage | None:
        """A stage for input type t: a layer, a list, a repeat, a block, an alias or a reuse."""
        choice = self.draw(st.integers(0, 9))
        if choice in (0, 1) and self.depth < 2:
            stage = self.block_stage(t, nameable=True)
            if stage:
                return stage
        if choice == 2:
            stage = self.list_stage(t)
            if stage:
                return stage
        if choice == 3:
            stage = self.reuse_stage(t, env)
            if stage:
                return stage
        call = self.draw_call(t, sequential=False, allow_extras=False)
        if call is None:
            return None
        named = RECIPES[call.kind].sequential and self.draw(st.booleans())
        return call_stage(call, self.b.fresh("l") if named else None)

    def list_stage(self, t: T) -> Stage | None:
        items, cur = [], t
        env = self.env
        for _ in range(self.draw(st.integers(1, 3))):
            if self.depth < 2 and self.draw(st.integers(0, 4)) == 0:
                item = self.block_stage(cur, nameable=False)
            else:
                call = self.draw_call(cur, sequential=True, allow_extras=False)
                item = call_stage(call) if call else None
            if item is None:
                break
            if self.draw(st.integers(0, 3)) == 0:
                item.cond = self.cond()
            try:
                cur = self._seq([item], [cur], env)[0]
            except Invalid:
                return None
            items.append(item)
        if not items:
            return None
        if not any(i.cond is None or i.cond.value(env) for i in items):
            return None
        count = self.draw(st.integers(1, 3))
        seq = items * count
        try:
            self._seq(seq, [t], Env(dict(env.vars), dict(env.bind)))
        except Invalid:
            count, seq = 1, items
        # `layer * n` repeats one layer (its `when`, if any, needs the brackets of a list)
        bare = len(items) == 1 and count > 1 and items[0].cond is None and self.draw(st.booleans())
        if bare:
            text = f"{items[0].full()} * {count}"
        else:
            text = "[" + ", ".join(i.full() for i in items) + "]" + (f" * {count}" if count > 1 else "")
        construct = "repeat_layer" if bare else "list" if count == 1 else "repeat_list"

        stage = Stage(text, lambda ins, e: [], self.b.fresh("seq") if self.draw(st.booleans()) else None)

        def apply(ins, e):
            if not any(i.cond is None or i.cond.value(e) for i in items):
                raise Invalid("a list whose every item is left out")   # E0318 in the checker
            e.drawn.add(construct)
            outs = self._seq(seq, ins, e)
            if stage.name:   # a named list can be called again, like a named block
                e.layers[stage.name] = ("mod", list(ins), outs)
            return outs
        stage.apply = apply
        return stage

    @staticmethod
    def _seq(items: list[Stage], ins: list[T], env: Env) -> list[T]:
        for item in items:
            ins = item.run(ins, env)
            if len(ins) != 1:
                raise Invalid("sequence")
        return ins

    def reuse_stage(self, t: T, env: Env) -> Stage | None:
        """Call a named layer or block of this body again, sharing its weights."""
        fitting = [n for n, info in env.layers.items() if self.fits_reuse(info, t, env)]
        if fitting:
            name = self.draw(st.sampled_from(fitting))
            kind = "shared_layer" if env.layers[name][0] == "leaf" else "shared_block"

            def apply(ins, e, name=name, kind=kind):
                info = e.layers.get(name)
                if info is None or not self.fits_reuse(info, ins[0], e):
                    raise Invalid("reuse")
                e.drawn.add(kind)
                if info[0] == "leaf":
                    return infer(info[1], ins, e.bind)
                return info[2]
            return Stage(name, apply)
        return None

    def reuse(self) -> None:
        """`h = v -> name` for a tensor v that a named layer or block of this body can take."""
        pairs = [(v, n) for v, t in self.env.vars.items() for n, info in self.env.layers.items()
                 if self.fits_reuse(info, t, self.env)]
        if not pairs:
            return
        src, name = self.draw(st.sampled_from(pairs))
        stage = self.reuse_stage(self.env.vars[src], self.env)
        if stage is None:
            return
        out = self.b.fresh("h")

        def effect(e: Env):
            (e.vars[out],) = stage.run([e.vars[src]], e)
        self.emit(f"{out} = {src} -> {stage.full()}", effect)
        self.use(src)
        self.new_var(out)

    @staticmethod
    def fits_reuse(info: tuple, t: T, env: Env) -> bool:
        if info[0] == "mod":
            return info[1] == [t]
        call, old = info[1], info[2]
        if len(old) != 1:
            return False
        try:
            infer(call, [t], env.bind)
            layer = REGISTRY[call.kind].model_validate(
                {k: v for k, v in call.bound(env.bind).items() if v is not None})
            # the same weights and the same module: check accepts other constructors as long as
            # the weights fit (regressions/reuse_other_constructor.nn), but the module fails
            return layer.params([t]) == layer.params(old) and _constructor(layer, [t]) == \
                _constructor(layer, old)
        except Invalid:
            return False

    def block_stage(self, t: T, nameable: bool) -> Stage | None:
        """A call of an existing block (same or other arguments) or of a new one."""
        usable = [blk for blk in self.b.blocks if blk.depth > self.depth and blk.inputs == 1
                  and (blk.in_helper or not self.in_helper)]
        if usable and self.draw(st.booleans()):
            blk = self.draw(st.sampled_from(usable))
            values = self.block_args(blk)
            try:
                blk.outputs([t], values, set())
                return self.block_call(blk, values, nameable)
            except Invalid:
                pass
        blk = self.new_block([t])
        if blk is None:
            return None
        return self.block_call(blk, {p: v for p, v, _ in blk.params}, nameable)

    def block_args(self, blk: Block) -> dict:
        values = {}
        for name, first, _ in blk.params:
            if isinstance(first, bool):
                values[name] = self.draw(st.booleans())
            elif self.draw(st.booleans()):
                values[name] = first
            else:
                values[name] = self.draw(st.integers(1, 6))
        return values

    def block_call(self, blk: Block, values: dict, nameable: bool,
                   tensors: list[str] = ()) -> Stage:
        text = blk.call_text(values, tensors)
        args_text = blk.call_text(values)
        stage = Stage(text, lambda ins, e: [], None)
        if nameable and self.draw(st.booleans()):
            stage.name = self.b.fresh("blk")
        depth = self.depth

        def apply(ins, e):
            outs = blk.outputs(ins, values, e.drawn)
            calls = e.bind.setdefault("__calls__", {}).setdefault(blk.name, set())
            if calls:
                e.drawn.add("block_same_args" if args_text in calls else "block_different_args")
            calls.add(args_text)
            if depth > 0:
                e.drawn.add("block_nested")
            if any(d for _, _, d in blk.params):
                e.drawn.add("block_default_param")
            if blk.alias:
                e.drawn.add("block_alias")
            if blk.inputs > 1:
                e.drawn.add("block_two_inputs")
            if len(outs) > 1:
                e.drawn.add("block_several_outputs")
            if stage.name and len(outs) == 1:
                e.layers[stage.name] = ("mod", list(ins), outs)
            return outs
        stage.apply = apply
        return stage

    def new_block(self, ins: list[T]) -> Block | None:
        """Define a block (or alias) whose first call takes `ins`."""
        b = self.b
        in_helper = b.includes and (self.in_helper or self.draw(st.booleans()))
        name = b.fresh("Blk")
        width = self.draw(st.integers(1, 6))
        params: list[tuple[str, Any, bool]] = [("c", width, self.draw(st.integers(0, 3)) == 0)]
        if self.draw(st.booleans()):
            params.append(("act", self.draw(st.booleans()), True))
        kinds = {p: ("bool" if isinstance(v, bool) else "int") for p, v, _ in params}
        head = ", ".join(f"{p} = {lit(v)}" if d else p for p, v, d in params)
        consts = (lambda: {}) if in_helper else b.const_values
        bind = {**consts(), **{p: v for p, v, _ in params}}
        if len(ins) == 1 and self.draw(st.integers(0, 3)) == 0:
            stage = self.alias_stage(ins[0], kinds, bind, in_helper)
            if stage is None:
                return None

            def alias_outputs(types: list[T], values: dict, drawn: set) -> list[T]:
                e = Env({"x": types[0]}, {**consts(), **values})
                outs = stage.run(types, e)
                drawn |= e.drawn
                return outs
            blk = Block(name, params, f"block {name}({head}) = {stage.full()}", alias_outputs, 1,
                        in_helper, self.depth + 1, alias=True)
            b.blocks.append(blk)
            return blk
        in_names = ["x", "y"][:len(ins)]
        env = Env(dict(zip(in_names, ins)), dict(bind))
        body = Body(b, env, self.depth + 1, in_helper, kinds)
        body.write(self.draw(st.integers(1, 3)))
        out_lines, out_vars = body.finish(block=True)
        lines = [f"  in {', '.join(in_names)}"] + [f"  {line}" for line in body.lines] + out_lines
        text = f"block {name}({head}) {{\n" + "\n".join(lines) + "\n}"
        effects = list(body.effects)

        def outputs(types: list[T], values: dict, drawn: set) -> list[T]:
            e = Env(dict(zip(in_names, types)), {**consts(), **values})
            for effect in effects:
                effect(e)
            drawn |= e.drawn
            return [e.vars[v] for v in out_vars]
        blk = Block(name, params, text, outputs, len(ins), in_helper, self.depth + 1)
        b.blocks.append(blk)
        return blk

    def alias_stage(self, t: T, kinds: dict, bind: dict, in_helper: bool) -> Stage | None:
        """The right side of `block Name(c) = ...`: one layer or a list."""
        body = Body(self.b, Env({"x": t}, dict(bind)), self.depth + 1, in_helper, kinds)
        body.alias = True
        stage = body.list_stage(t) if self.draw(st.booleans()) else None
        if stage is None:
            call = body.draw_call(t, sequential=True, allow_extras=False)
            if call is None:
                return None
            stage = call_stage(call)
        stage.name = None
        try:
            stage.run([t], Env({"x": t}, dict(bind)))
        except Invalid:
            return None
        return stage

    def two_input_block(self) -> None:
        """`h = a -> Blk(b, args)` or `h = Blk(a, b, args)`: a block with two `in` tensors."""
        floats = [v for v, t in self.env.vars.items() if t.dtype == "float"]
        if self.depth >= 2 or not floats:
            return
        a, other = self.draw(st.sampled_from(floats)), self.draw(st.sampled_from(floats))
        blk = self.new_block([self.env.vars[a], self.env.vars[other]])
        if blk is None:
            return
        values = {p: v for p, v, _ in blk.params}
        out = self.b.fresh("h")
        if self.draw(st.booleans()):
            stage = self.block_call(blk, values, True, [other])
            line = f"{out} = {a} -> {stage.full()}"
        else:
            stage = self.block_call(blk, values, False, [a, other])
            line = f"{out} = {stage.full()}"

        def effect(e: Env):
            outs = stage.apply([e.vars[a], e.vars[other]], e)
            if len(outs) != 1:
                raise Invalid("block outputs")
            e.vars[out] = outs[0]
        self.emit(line, effect)
        self.use(a)
        self.use(other)
        self.new_var(out)

    def flow(self) -> None:
        """`v = src -> stage -> ...`, possibly unpacking several results."""
        src = self.pick_var()
        t = self.env.vars[src]
        stages: list[Stage] = []
        cur = [t]
        probe = Env(dict(self.env.vars), dict(self.env.bind), dict(self.env.layers))
        for _ in range(self.draw(st.integers(1, 3))):
            stage = self.stage(cur[0], probe)   # probe: a layer named earlier in this flow too
            if stage is None:
                break
            if self.draw(st.integers(0, 5)) == 0:
                stage.cond = self.cond()
            try:
                outs = stage.run(cur, probe)
            except Invalid:
                break
            stages.append(stage)
            cur = outs
            if len(outs) != 1:
                break
        if not stages:
            return
        names = [self.b.fresh("h") for _ in cur]
        line = f"{', '.join(names)} = {src} -> " + " -> ".join(s.full() for s in stages)

        def effect(e: Env):
            outs = [e.vars[src]]
            for s in stages:
                outs = s.run(outs, e)
            if len(outs) != len(names):
                raise Invalid("unpack")
            for n, o in zip(names, outs):
                e.vars[n] = o
            if len(names) > 1:
                e.drawn.add("chunk" if "chunk(" in line else "split")
        self.emit(line, effect)
        self.use(src)
        for n in names:
            self.new_var(n, single=len(names) == 1)

    def extra_call(self) -> None:
        """A kind that takes further tensors (a second operand, keys and values, a mask)."""
        src = self.pick_var()
        t = self.env.vars[src]
        for _ in range(4):
            call = self.draw_call(t, sequential=False, allow_extras=True)
            if call is not None and call.extras:
                self.apply_with_extras(src, call)
                return

    def apply_with_extras(self, src: str, call: Call) -> None:
        """`e = src -> chain` for each further tensor, then `h = src -> kind(e..., k=e...)` or,
        unnamed, `h = kind(src, e..., k=e...)`."""
        tensors, keywords = [], {}
        for extra in call.extras:
            var = self.b.fresh("e")

            def prep(e, var=var, extra=extra):
                x = e.vars[src]
                for c in extra.chain:
                    (x,) = infer(c, [x], e.bind)
                e.vars[var] = x
            self.emit(f"{var} = {src} -> {' -> '.join(render(c) for c in extra.chain)}", prep)
            if extra.keyword:
                keywords[extra.keyword] = var
            else:
                tensors.append(var)
        out = self.b.fresh("h")
        ins_vars = tensors + list(keywords.values())
        kw_names = list(keywords)
        name = self.b.fresh("l") if RECIPES[call.kind].sequential and self.draw(st.booleans()) \
            else None
        as_call = name is None and self.draw(st.booleans())
        if as_call:
            line = f"{out} = {render(call, [src, *tensors], keywords)}"
        else:
            line = f"{out} = {src} -> {name + ': ' if name else ''}{render(call, tensors, keywords)}"

        def effect(e):
            ins = [e.vars[src]] + [e.vars[v] for v in ins_vars]
            outs = infer(call, ins, e.bind, kw_names)
            if len(outs) != 1:
                raise Invalid("several results")
            e.vars[out] = outs[0]
            e.drawn.add(call.kind)
            if kw_names:
                e.drawn.add("keyword_tensor")
            if as_call:
                e.drawn.add("tensor_call")
            if name:
                e.layers[name] = ("leaf", call, ins)
        self.emit(line, effect)
        self.use(src)
        for v in ins_vars:
            self.use(v)
        self.new_var(out)

    def merge(self) -> None:
        """Two tensors joined by an operator or cat, when their types allow it."""
        floats = [v for v, t in self.env.vars.items() if t.dtype == "float"]
        if len(floats) < 2:
            return
        a, b = self.draw(st.sampled_from(floats)), self.draw(st.sampled_from(floats))
        ta, tb = self.env.vars[a], self.env.vars[b]
        if self.draw(st.integers(0, 3)) == 0:
            self.number_op(a)
            return
        options = []
        if ta.shape == tb.shape:
            options += ["+", "-", "*", "/"]
        if len(ta.shape) == len(tb.shape) and sum(x != y for x, y in zip(ta.shape, tb.shape)) <= 1:
            options.append("cat")
        if len(ta.shape) >= 2 and len(tb.shape) == len(ta.shape) and ta.shape[-1] == tb.shape[-1] \
                and ta.shape[:-2] == tb.shape[:-2]:
            options.append("@")
        if not options:
            return
        op = self.draw(st.sampled_from(options))
        out = self.b.fresh("h")
        name_of = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "cat": "cat"}
        if op == "cat":
            dims = [i + 1 for i in range(len(ta.shape)) if ta.shape[i] != tb.shape[i]] or \
                list(range(1, len(ta.shape) + 1))
            dim = self.draw(st.sampled_from(dims))
            line = f"{out} = cat({a}, {b}, dim={dim})"
            call, ins_vars = Call("cat", {"dim": dim}), [a, b]
        elif op == "@":
            line = f"{out} = {a} @ transpose({b}, -1, -2)"
            call, ins_vars = None, [a, b]
        elif op in ("*", "/"):
            gate = self.draw(st.sampled_from(["sigmoid", "softplus"]))
            line = f"{out} = {a} {op} {gate}({b})"
            call, ins_vars = Call(name_of[op], {}), [a, b]
        else:
            line = f"{out} = {a} {op} {b}"
            call, ins_vars = Call(name_of[op], {}), [a, b]

        def effect(e: Env):
            x, y = e.vars[ins_vars[0]], e.vars[ins_vars[1]]
            if op == "@":
                (yt,) = infer(Call("transpose", {"dim0": -1, "dim1": -2}), [y], {})
                (o,) = infer(Call("matmul", {}), [x, yt], {})
            else:
                (o,) = infer(call, [x, y], {})
            e.drawn.add(name_of[op])
            e.vars[out] = o
        self.emit(line, effect)
        self.use(a)
        self.use(b)
        self.new_var(out)

    def number_op(self, a: str) -> None:
        """`h = a * 2.0`, `a + 1`, ...: a tensor with a number."""
        op = self.draw(st.sampled_from(["+", "-", "*", "/"]))
        number = self.draw(st.sampled_from([1, 2, 0.5, 3.0]))
        kind = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[op]
        call = Call(kind, {"other": float(number)})
        out = self.b.fresh("h")

        def effect(e: Env):
            (e.vars[out],) = infer(call, [e.vars[a]], e.bind)
            e.drawn.update({kind, "tensor_number"})
        self.emit(f"{out} = {a} {op} {number}", effect)
        self.use(a)
        self.new_var(out)

    def tie(self) -> None:
        """`name: linear(n, bias=false, tie=other)` with other's weight of the same shape."""
        leaves = [(n, info) for n, info in self.env.layers.items() if info[0] == "leaf"
                  and info[1].kind in ("linear", "embedding")]
        if not leaves:
            return
        target, info = self.draw(st.sampled_from(leaves))
        call, old = info[1], info[2]
        layer = REGISTRY[call.kind].model_validate(
            {k: v for k, v in call.bound(self.env.bind).items() if v is not None})
        rows, cols = layer.params(old)["weight"]
        if not any(t.dtype == "float" for t in self.env.vars.values()):
            return
        src = self.pick_var(floats_only=True)
        t = self.env.vars[src]
        prep = None
        if t.shape[-1] != cols:
            prep = Call("linear", {"out_features": cols}, positional=1)
        mine = self.b.fresh("l")
        tied = Call("linear", {"out_features": rows, "bias": self.draw(st.booleans())}, positional=1)
        out = self.b.fresh("h")
        chain = ([render(prep)] if prep else []) + [f"{mine}: {render(tied)[:-1]}, tie={target})"]
        line = f"{out} = {src} -> " + " -> ".join(chain)

        def effect(e: Env):
            x = e.vars[src]
            if prep is not None:
                (x,) = infer(prep, [x], e.bind)
            (o,) = infer(tied, [x], e.bind)
            e.drawn.add("tie")
            e.layers[mine] = ("leaf", tied, [x])
            e.vars[out] = o
        try:
            self.emit(line, effect)
        except Invalid:
            return
        self.use(src)
        self.new_var(out)

    def local_const(self) -> None:
        """`const n = channels(v) * k`: a constant of the body, from a tensor's shape, that later
        arguments and conditions may use."""
        var = self.pick_var()
        name = self.b.fresh("n")
        scale = self.draw(st.integers(1, 2))
        line = f"const {name} = channels({var}) * {scale}"

        def effect(e: Env):
            e.bind[name] = e.vars[var].shape[0] * scale
            e.drawn.add("local_const")
        self.emit(line, effect)
        self.params = {**self.params, name: "int"}

    def write(self, count: int) -> None:
        for _ in range(count):
            what = self.draw(st.sampled_from(["flow", "flow", "flow", "extra", "merge", "tie",
                                              "const", "block2", "reuse"]))
            try:
                {"flow": self.flow, "extra": self.extra_call, "merge": self.merge,
                 "tie": self.tie, "const": self.local_const, "block2": self.two_input_block,
                 "reuse": self.reuse}[what]()
            except Invalid:
                continue

    def finish(self, block: bool) -> tuple[list[str], list[str]]:
        """The `out` line, or a tail of layers on the current tensor, and the output variables.
        A model outputs up to three of its unused float tensors, a block one or two; the first
        output may be a flow (`out h -> layer when cond, g`)."""
        floats = [v for v in self.unused if self.env.vars[v].dtype == "float"]
        last = self.cursor if self.env.vars[self.cursor].dtype == "float" else \
            (floats[-1] if floats else self._to_float())
        more = (1 if self.draw(st.integers(0, 3)) == 0 else 0) if block else 2
        outs = [last] + [v for v in floats if v != last][:more]
        if len(outs) == 1 and last == self.last_single and self.draw(st.booleans()):
            tail = self._tail(last)
            if tail:
                return tail, [last]
        texts = list(outs)
        if self.draw(st.integers(0, 3)) == 0:
            flow = self._out_flow(last)
            if flow is not None:
                texts[0], outs[0] = flow
        return [f"  out {', '.join(texts)}"], outs

    def _out_flow(self, var: str) -> tuple[str, str] | None:
        """`var -> layer [when cond]` as an output: its text and a hidden variable for its type."""
        call = self.draw_call(self.env.vars[var], sequential=True, allow_extras=False)
        if call is None:
            return None
        stage = call_stage(call)
        if self.draw(st.booleans()):
            stage.cond = self.cond()
        hidden = self.b.fresh("out")

        def effect(e: Env):
            (e.vars[hidden],) = stage.run([e.vars[var]], e)
            e.drawn.add("out_flow")
        try:
            self.emit("", effect)
        except Invalid:
            return None
        self.lines.pop()   # the flow is written in the `out` line
        return f"{var} -> {stage.full()}", hidden

    def _to_float(self) -> str:
        src = self.cursor
        out = self.b.fresh("h")
        call = Call("zeros_like", {"dtype": "float"})

        def effect(e):
            (e.vars[out],) = infer(call, [e.vars[src]], {})
        self.emit(f"{out} = {src} -> {render(call)}", effect)
        self.new_var(out)
        return out

    def _tail(self, var: str) -> list[str] | None:
        """Statement-form layers on the current tensor; the last one is the output."""
        lines, t = [], self.env.vars[var]
        calls = []
        for _ in range(self.draw(st.integers(1, 2))):
            call = self.draw_call(t, sequential=True, allow_extras=False)
            if call is None:
                break
            try:
                (t,) = call_stage(call).apply([t], Env({}, dict(self.env.bind)))
            except (Invalid, ValueError):
                break
            name = self.b.fresh("l") if self.draw(st.booleans()) else None
            calls.append(call)
            lines.append(f"  {name + ': ' if name else ''}{render(call)}")
        if not calls:
            return None

        def effect(e: Env):
            x = e.vars[var]
            for c in calls:
                (x,) = infer(c, [x], e.bind)
                e.drawn.add(c.kind)
            e.vars[var] = x
            e.drawn.add("implicit_output")
        self.emit("", effect)
        self.lines.pop()
        return lines


# ---- the model ----------------------------------------------------------------------------
@dataclass
class Generated:
    """A generated spec: its main text, the helper file it includes (if any), what it covers."""

    text: str
    helper: str | None
    drawn: frozenset[str]

    def write(self, folder: Path) -> Path:
        """Write the spec (and its helper) into `folder`; return the main file's path."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.helper is not None:
            (folder / HELPER).write_text(self.helper, encoding="utf-8")
        path = folder / "spec.nn"
        path.write_text(self.text, encoding="utf-8")
        return path

    def show(self) -> str:
        if self.helper is None:
            return self.text
        return f"# {HELPER}\n{self.helper}\n# spec.nn\n{self.text}"


@st.composite
def specs(draw: Draw) -> Generated:
    """A random valid spec that stresses every construct (see the module docstring)."""
    b = Builder(draw)
    focus = draw(st.sampled_from(sorted(RECIPES)))
    first = RECIPES[focus].input_type(draw)
    inputs = {"x": first}
    for i in range(draw(st.integers(0, 2))):
        other = RECIPES[draw(st.sampled_from(sorted(RECIPES)))].input_type(draw)
        inputs[f"x{i + 1}"] = draw(st.sampled_from([first, other]))
    params: dict[str, str] = {}
    bind: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 2))):
        name = b.fresh("p")
        bind[name] = draw(st.one_of(st.integers(1, 6), st.booleans()))
        params[name] = "bool" if isinstance(bind[name], bool) else "int"
    body = Body(b, Env(dict(inputs), dict(bind)), 0, False, params)
    body.cursor = "x"
    _focus(body, focus)   # the focus kind first, on the first input: a run draws every kind
    for var, t in inputs.items():
        if t.dtype == "long" and var in body.unused:
            _embed(body, var)
    body.write(draw(st.integers(1, 5)))
    out_lines, outs = body.finish(block=False)
    lines = [f"  input {v}: {t.dtype}[{', '.join(map(str, t.shape))}]" for v, t in inputs.items()]
    lines += [f"  {line}" for line in body.lines] + out_lines
    head = ", ".join(f"{n} = {lit(v)}" for n, v in bind.items())
    main, helper = b.text(f"model m({head}) {{\n" + "\n".join(lines) + "\n}")
    # what the spec exercises: the model's statements once more, from the start
    final = Env(dict(inputs), {**bind, **b.const_values()})
    for effect in body.effects:
        effect(final)
    drawn = set(b.drawn) | final.drawn
    if len(inputs) > 1:
        drawn.add("several_inputs")
    if len(outs) > 1:
        drawn.add("several_outputs")
    if any(re.search(rf"\b{p}\b", line) for p in params for line in body.lines + out_lines):
        drawn.add("model_param")
    return Generated(main, helper, frozenset(drawn))


def _focus(body: Body, kind: str) -> None:
    """Apply `kind` to the first input, so that a run of N specs draws every kind."""
    recipe = RECIPES[kind]
    t = body.env.vars["x"]
    for _ in range(4):
        args = recipe.args(body.draw, t)
        if args is None:
            continue
        call = Call(kind, args, positional=body.draw(st.integers(0, 2)))
        call.extras = recipe.extras(body.draw, t, args)
        try:
            body.check_call(call, t)
        except Invalid:
            continue
        if call.extras:
            body.apply_with_extras("x", call)
            return
        name = body.b.fresh("l") if recipe.sequential and body.draw(st.booleans()) else None
        stage = call_stage(call, name)
        try:
            count = len(stage.apply([t], Env(dict(body.env.vars), dict(body.env.bind))))
        except Invalid:
            continue
        names = [body.b.fresh("h") for _ in range(count)]

        def effect(e, stage=stage, names=names):
            outs = stage.run([e.vars["x"]], e)
            if len(outs) != len(names):
                raise Invalid("unpack")
            for n, o in zip(names, outs):
                e.vars[n] = o
            if len(names) > 1:
                e.drawn.add(kind)
        body.emit(f"{', '.join(names)} = x -> {stage.full()}", effect)
        body.use("x")
        for n in names:
            body.new_var(n, single=len(names) == 1)
        return


def _embed(body: Body, var: str) -> None:
    """Long ids go through an embedding (the harness draws ids below its table size)."""
    call = Call("embedding", {"num_embeddings": body.draw(st.integers(4, 8)),
                              "embedding_dim": body.draw(st.integers(1, 5))}, positional=2)
    out = body.b.fresh("h")
    name = body.b.fresh("l")

    def effect(e):
        (e.vars[out],) = infer(call, [e.vars[var]], e.bind)
        e.drawn.add("embedding")
        e.layers[name] = ("leaf", call, [e.vars[var]])
    body.emit(f"{out} = {var} -> {name}: {render(call)}", effect)
    body.use(var)
    body.new_var(out)


def check_generated(g: Generated, seed: int = 0) -> dict:
    """Write `g` into a temporary folder, load it, and run it through the differential harness.

    Raises:
        AssertionError: the spec does not check (a bug of this generator), or the built module
            and the interpreter disagree; the message holds the spec's text.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = g.write(Path(folder))
        try:
            spec = nnspec.load(path)
        except nnspec.SpecError as err:
            raise AssertionError(f"a generated spec does not check (a generator bug):\n"
                                 f"{g.show()}\n{err}") from None
        try:
            return check_spec(spec, seed=seed)
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- the spec:\n{g.show()}") from None
