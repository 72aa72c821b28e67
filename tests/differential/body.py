"""One model or block body of a generated spec: its statements (flows, calls with extra tensors,
merges by operators and cat, ties, reuse of named layers, local constants) and its outputs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from nnspec.layers import REGISTRY, T

from .blocks import BlockDrawing
from .loops import comprehension_stage, name_items, quoted_stage, splice_pair
from .chains import chain_statement
from .exprs import arith_text, param_ifelse
from .declared import declared_statement
from .outer_ties import tie_from_block
from .pieces import (
    Cond, Effect, Env, Invalid, Stage, call_stage, constructor, infer, lit, render, weight
)
from .recipes import RECIPES, Call, Expr, Recipe

if TYPE_CHECKING:
    from .specgen import Builder


class Body(BlockDrawing):
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
        self.given = set(env.vars)         # the inputs: never an output as they are
        self.cursor = list(env.vars)[-1]
        self.last_single: str | None = None   # the variable the last statement alone assigned
        self.alias = False                     # an alias's conditions cannot name tensors
        self.construct: str | None = None      # what the last int_expr exercised (exprs.py)

    # -- bookkeeping
    def emit(self, line: str, effect: Effect) -> None:
        trial = self.env.copy()      # a statement that raises Invalid leaves no trace
        effect(trial)
        self.env.__dict__.update(trial.__dict__)
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
        pool = fresh if fresh and self.draw(st.integers(0, 3)) else options
        return self.draw(st.sampled_from(pool))

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
        if choice == 3:  # written with arithmetic (exprs.py), the same everywhere
            text, self.construct = arith_text(self.draw, value)
            return Expr(text, lambda bind, v=value: v)
        if choice == 4:  # `(value if p > k else other)`: follows the parameters
            picked = param_ifelse(self.draw, value, self.params)
            if picked is not None:
                expr, self.construct = picked
                return expr
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
            return Cond(("not " if neg else "") + name, lambda e: e.bind[name] != neg)
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
    def recipe_for(self, t: T, sequential: bool, listed: bool = False) -> Recipe | None:
        # in a list, a function may stand too (it becomes a module there)
        options = [r for r in RECIPES.values() if r.fits(t)
                   and ((r.listable if listed else r.sequential) or not sequential)]
        if not options:
            return None
        return self.draw(st.sampled_from(sorted(options, key=lambda r: r.kind)))

    def draw_call(self, t: T, sequential: bool, allow_extras: bool,
                  listed: bool = False) -> Call | None:
        for _ in range(4):
            recipe = self.recipe_for(t, sequential, listed)
            if recipe is None:
                return None
            args = recipe.args(self.draw, t)
            if args is None:
                continue
            call = recipe.call(self.draw, t, args)
            if call.extras and not allow_extras:
                continue
            try:
                self.check_call(call, t)
            except Invalid:
                continue
            if recipe.width and isinstance(args.get(recipe.width), int):
                self.parameterize(call, recipe.width, t)
            return call
        return None

    def check_call(self, call: Call, t: T) -> list[T]:
        for c in call.before:
            (t,) = infer(c, [t], self.env.bind)
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
        self.construct = None
        call.args[width] = self.int_expr(old)
        try:
            self.check_call(call, t)
        except Invalid:
            call.args[width] = old
            return
        if self.construct:
            self.b.drawn.add(self.construct)

    # -- statements
    def stage(self, t: T, env: Env) -> Stage | None:
        """A stage for input type t: a layer, a list, a repeat, a block, an alias or a reuse."""
        choice = self.draw(st.integers(0, 9))
        if choice in (0, 1) and self.depth < 2:
            stage = self.block_stage(t, nameable=True)
            if stage:
                return stage
        if choice == 2 and self.draw(st.booleans()):
            stage = comprehension_stage(self, t)
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
        if named and self.draw(st.integers(0, 3)) == 0:
            return quoted_stage(self, call)
        return call_stage(call, self.b.fresh("l") if named else None)

    def list_stage(self, t: T) -> Stage | None:
        items, cur = [], t
        env = self.env
        for _ in range(self.draw(st.integers(1, 3))):
            if self.depth < 2 and self.draw(st.integers(0, 4)) == 0:
                item = self.block_stage(cur, nameable=False)
            else:
                call = self.draw_call(cur, sequential=True, allow_extras=False, listed=True)
                item = call_stage(call) if call else None
            if item is None:
                break
            if self.draw(st.integers(0, 4)) == 0:
                item = self.spliced(item, cur) or item
            elif self.draw(st.integers(0, 3)) == 0:
                item.cond = self.cond()
            try:
                cur = self._seq([item], [cur], env)[0]
            except Invalid:
                return None
            items.append(item)
        if not items:
            return None
        items = splice_pair(self, items)
        if not any(i.cond is None or i.cond.value(env) for i in items):
            return None
        count = self.draw(st.integers(1, 3))
        seq = items * count
        try:
            self._seq(seq, [t], Env(dict(env.vars), dict(env.bind)))
        except Invalid:
            count, seq = 1, items
        # `layer * n` repeats one layer (its `when`, if any, needs the brackets of a list)
        bare = len(items) == 1 and count > 1 and items[0].cond is None and not items[0].spliced \
            and self.draw(st.integers(0, 3)) > 0
        if bare:
            text = f"{items[0].full()} * {count}"
        else:
            text = "[" + ", ".join(i.full() for i in items) + "]"
            text += f" * {count}" if count > 1 else ""
        construct = "repeat_layer" if bare else "list" if count == 1 else "repeat_list"
        if construct == "list" and not self.alias:   # an alias's list can be repeated (`A * 2`)
            name_items(self, items)
            text = "[" + ", ".join(i.full() for i in items) + "]"

        name = self.b.fresh("seq") if self.draw(st.booleans()) else None
        stage = Stage(text, lambda ins, e: [], name)

        def apply(ins, e):
            if not any(i.cond is None or i.cond.value(e) for i in items):
                raise Invalid("a list whose every item is left out")   # E0318 in the checker
            e.drawn.add(construct)
            outs = self._seq(seq, ins, e)
            if stage.name and not stage.list_item:   # a named list can be called again
                e.layers[stage.name] = ("mod", list(ins), outs)
            return outs
        stage.apply = apply
        return stage

    def spliced(self, item: Stage, t: T) -> Stage | None:
        """`item * k` inside a list: k copies spliced into it (`[a, b * 2]` has three items)."""
        k = self.draw(st.integers(2, 3))
        copies = [item] * k
        try:
            self._seq(copies, [t], Env(dict(self.env.vars), dict(self.env.bind)))
        except Invalid:
            return None

        def apply(ins, e):
            e.drawn.add("repeat_in_list")
            return self._seq(copies, ins, e)
        return Stage(f"{item.full()} * {k}", apply, spliced=True)

    @staticmethod
    def _seq(items: list[Stage], ins: list[T], env: Env) -> list[T]:
        for item in items:
            ins = item.run(ins, env)
            if len(ins) != 1:
                raise Invalid("sequence")
        return ins

    def reuse_stage(self, t: T, env: Env, name: str | None = None) -> Stage | None:
        """Call a named layer or block of this body (`name`, or one that fits) again, sharing
        its weights."""
        fitting = [n for n, info in env.layers.items() if self.fits_reuse(info, t, env)]
        if fitting:
            name = name if name in fitting else self.draw(st.sampled_from(fitting))
            kind = "shared_layer" if env.layers[name][0] == "leaf" else "shared_block"

            def apply(ins, e, name=name, kind=kind):
                info = e.layers.get(name)
                if info is None or not self.fits_reuse(info, ins[0], e):
                    raise Invalid("reuse")
                e.drawn.add(kind)
                if "." in name:
                    e.drawn.add("shared_inner_layer")
                if info[0] == "leaf":
                    return infer(info[1], ins, e.bind)
                return info[2]
            return Stage(name, apply)
        return None

    def flow_from(self, src: str, stage: Stage) -> None:
        """`h = src -> stage`: a new tensor from an existing one through one stage."""
        out = self.b.fresh("h")

        def effect(e: Env):
            (e.vars[out],) = stage.run([e.vars[src]], e)
        self.emit(f"{out} = {src} -> {stage.full()}", effect)
        self.use(src)
        self.new_var(out)

    def reuse(self) -> None:
        """`h = v -> name` for a tensor v that a named layer or block of this body can take."""
        pairs = [(v, n) for v, t in self.env.vars.items() for n, info in self.env.layers.items()
                 if self.fits_reuse(info, t, self.env)]
        if not pairs:
            return
        # blocks and layers inside them (blk.l) are the rarer, so half the time one of them
        rare = [(v, n) for v, n in pairs if "." in n or self.env.layers[n][0] == "mod"]
        src, name = self.draw(st.sampled_from(rare if rare and self.draw(st.booleans()) else pairs))
        stage = self.reuse_stage(self.env.vars[src], self.env, name)
        if stage is None:
            return
        self.flow_from(src, stage)

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
            return layer.params([t]) == layer.params(old) and constructor(layer, [t]) == \
                constructor(layer, old)
        except Invalid:
            return False

    def flow(self) -> None:
        """`v = src -> stage -> ...`, possibly unpacking several results."""
        src = self.pick_var()
        t = self.env.vars[src]
        stages: list[Stage] = []
        cur = [t]
        probe = self.env.copy()
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
        # a module kind named, in a flow, or in a list or repeat with its tensors bound to each
        # item ([kind(e, k=m)] * n); a functional one in a flow or called with all its tensors
        forms = ["named", "flow", "list"] if RECIPES[call.kind].sequential else ["flow", "call"]
        form = self.draw(st.sampled_from(forms))
        name = self.b.fresh("l") if form == "named" else None
        as_call, listed = form == "call", form == "list"
        repeat = self.draw(st.integers(1, 2)) if listed else 1
        if as_call:
            line = f"{out} = {render(call, [src, *tensors], keywords)}"
        elif listed:
            line = f"{out} = {src} -> [{render(call, tensors, keywords)}]"
            line += f" * {repeat}" if repeat > 1 else ""
        else:
            named = f"{name}: " if name else ""
            line = f"{out} = {src} -> {named}{render(call, tensors, keywords)}"

        def effect(e):
            x = e.vars[src]
            for _ in range(repeat):
                ins = [x] + [e.vars[v] for v in ins_vars]
                outs = infer(call, ins, e.bind, kw_names)
                if len(outs) != 1:
                    raise Invalid("several results")
                (x,) = outs
            e.vars[out] = x
            e.drawn.add(call.kind)
            if kw_names:
                e.drawn.add("keyword_tensor")
            if as_call:
                e.drawn.add("tensor_call")
            if listed:
                e.drawn.add("tensors_in_list")
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
        """`h = a * 2.0`, `a + 1`, `a ** 2`, ...: a tensor with a number."""
        op = self.draw(st.sampled_from(["+", "-", "*", "/", "**"]))
        # integral powers only: a negative base to a fractional power is NaN
        number = self.draw(st.sampled_from([2, 3.0] if op == "**" else [1, 2, 0.5, 3.0]))
        kind = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}[op]
        call = Call(kind, {"other": float(number)})
        out = self.b.fresh("h")

        def effect(e: Env):
            (e.vars[out],) = infer(call, [e.vars[a]], e.bind)
            e.drawn.update({kind, "tensor_number"} | ({"power_tensor"} if op == "**" else set()))
        self.emit(f"{out} = {a} {op} {number}", effect)
        self.use(a)
        self.new_var(out)

    def projection(self) -> None:
        """`h = v -> lN: linear(width)`: a named layer with a weight, which later statements
        (and, through a named block, the model) may reuse or tie to."""
        if not any(t.dtype == "float" for t in self.env.vars.values()):
            return
        src = self.pick_var(floats_only=True)
        call = Call("linear", {"out_features": self.draw(st.integers(1, 6)),
                               "bias": self.draw(st.booleans())}, positional=1)
        self.parameterize(call, "out_features", self.env.vars[src])
        stage = call_stage(call, self.b.fresh("l"))
        if self.draw(st.integers(0, 3)) == 0:
            declared_statement(self, src, call, stage)
            return
        self.flow_from(src, stage)

    def tie(self) -> None:
        """`name: linear(n, bias=false, tie=other)` with other's weight of the same shape."""
        if not self.depth and self.draw(st.integers(0, 2)) == 0:
            try:   # from inside a block, to the model's layer passed in (outer_ties.py)
                tie_from_block(self)
                return
            except Invalid:
                pass
        leaves = [(n, info) for n, info in self.env.layers.items() if info[0] == "leaf"
                  and info[1].kind in ("linear", "embedding")]
        if not leaves:
            self.projection()   # something to tie to next time
            return
        inner = [(n, info) for n, info in leaves if "." in n]   # a layer inside a named block
        target, info = self.draw(st.sampled_from(inner if inner and self.draw(st.booleans())
                                                 else leaves))
        rows, cols = weight(info[1], info[2], self.env.bind)
        if not any(t.dtype == "float" for t in self.env.vars.values()):
            return
        src = self.pick_var(floats_only=True)
        t = self.env.vars[src]
        prep = None
        if t.shape[-1] != cols:
            prep = Call("linear", {"out_features": cols}, positional=1)
        mine = self.b.fresh("l")
        tied = Call("linear", {"out_features": rows, "bias": self.draw(st.booleans())},
                    positional=1)
        out = self.b.fresh("h")
        chain = ([render(prep)] if prep else []) + [f"{mine}: {render(tied)[:-1]}, tie={target})"]
        line = f"{out} = {src} -> " + " -> ".join(chain)

        def effect(e: Env):
            x = e.vars[src]
            if prep is not None:
                (x,) = infer(prep, [x], e.bind)
            (o,) = infer(tied, [x], e.bind)
            # a replay under other arguments must still tie equal shapes (else check says E0405)
            now = e.layers.get(target)
            if now is None or now[0] != "leaf" or weight(now[1], now[2], e.bind) != \
                    weight(tied, [x], e.bind):
                raise Invalid("tie")
            e.drawn.add("tie_inner_layer" if "." in target else "tie")
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
            # blocks hold more named projections, and the model more ties, so that a model often
            # ties to a layer inside one of its blocks (tie=blk.l)
            extra = ["projection"] if self.depth else ["tie"]
            what = self.draw(st.sampled_from(["flow", "flow", "flow", "extra", "merge", "tie",
                                              "const", "block2", "reuse", "projection", "chain",
                                              *extra]))
            try:
                {"flow": self.flow, "extra": self.extra_call, "merge": self.merge,
                 "tie": self.tie, "const": self.local_const, "block2": self.two_input_block,
                 "reuse": self.reuse, "projection": self.projection,
                 "chain": lambda: chain_statement(self)}[what]()
            except Invalid:
                continue

    def class_source(self) -> str:
        """The float tensor an ensemble member's head takes: the current one, else the last
        unused float one, else zeros shaped like the current one (as `finish` picks)."""
        if self.env.vars[self.cursor].dtype == "float":
            return self.cursor
        floats = [v for v in self.unused if self.env.vars[v].dtype == "float"]
        return floats[-1] if floats else self._to_float()

    def finish(self, block: bool) -> tuple[list[str], list[str]]:
        """The `out` line, or a tail of layers on the current tensor, and the output variables.
        A model outputs up to three of its unused float tensors and the last long or bool one
        it computed (a mask, positions: compared exactly), a block one or two float tensors; the
        first output may be a flow (`out h -> layer when cond, g`)."""
        floats = [v for v in self.unused if self.env.vars[v].dtype == "float"]
        others = [v for v in self.unused if self.env.vars[v].dtype != "float"
                  and v not in self.given]
        last = self.cursor if self.env.vars[self.cursor].dtype == "float" else \
            (floats[-1] if floats else self._to_float())
        more = (1 if self.draw(st.integers(0, 3)) == 0 else 0) if block else 2
        outs = [last] + [v for v in floats if v != last][:more]
        if not block and others:
            outs.append(others[-1])
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
