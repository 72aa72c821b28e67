"""Blocks for a generated body: calls of existing blocks with equal or other arguments, new
blocks (one or two inputs, one or two outputs, parameters with defaults, in the main file or in
the included helper), and aliases (`block Name(c) = layer-or-list`)."""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from nnspec.layers import T

from .pieces import Block, Env, Invalid, Stage, call_stage, infer, lit
from .recipes import Call, Expr

# layers a block parameter may default to (`f = relu`) and a call may pass instead; one Expr per
# kind, so that a value equal to the default compares equal and is left out of the call
LAYER_ARGS = {k: Expr(k, lambda bind, k=k: k) for k in ("relu", "tanh", "sigmoid", "gelu", "silu")}


class BlockDrawing:
    """The block-drawing part of `body.Body` (a mixin: it uses the body's draw, env and builder;
    a block's own body is a new instance of the same class)."""

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
            if first in LAYER_ARGS.values():
                values[name] = self.draw(st.sampled_from(list(LAYER_ARGS.values())))
            elif isinstance(first, bool):
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
            inner: dict = {}
            outs = blk.outputs(ins, values, e.drawn, inner)
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
            # a list item's path starts with its list's name: it is not reused or tied to by its own
            named = stage.name and not stage.list_item
            if named and len(outs) == 1:
                e.layers[stage.name] = ("mod", list(ins), outs)
            if named:   # `name.layer` can be reused and tied to
                e.layers.update({f"{stage.name}.{n}": info for n, info in inner.items()})
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
        if self.draw(st.integers(0, 2)) == 0:   # a layer as a default: `f = relu`
            params.append(("f", self.draw(st.sampled_from(list(LAYER_ARGS.values()))), True))
        kinds = {p: ("bool" if isinstance(v, bool) else "layer" if isinstance(v, Expr) else "int")
                 for p, v, _ in params}
        head = ", ".join(f"{p} = {lit(v)}" if d else p for p, v, d in params)
        consts = (lambda: {}) if in_helper else b.const_values
        bind = {**consts(), **{p: v for p, v, _ in params}}
        if len(ins) == 1 and self.draw(st.integers(0, 3)) == 0:
            stage = self.alias_stage(ins[0], kinds, bind, in_helper)
            if stage is None:
                return None

            def alias_outputs(types: list[T], values: dict, drawn: set,
                              inner: dict | None = None) -> list[T]:
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
        body = type(self)(b, env, self.depth + 1, in_helper, kinds)
        if self.draw(st.integers(0, 2)) == 0:
            body.projection()   # a named weight that a model can tie to as name.layer
        body.write(self.draw(st.integers(1, 3)))
        if "f" in kinds:
            body.layer_param_stage("f")
        out_lines, out_vars = body.finish(block=True)
        lines = [f"  in {', '.join(in_names)}"] + [f"  {line}" for line in body.lines] + out_lines
        text = f"block {name}({head}) {{\n" + "\n".join(lines) + "\n}"
        effects = list(body.effects)

        def outputs(types: list[T], values: dict, drawn: set,
                    inner: dict | None = None) -> list[T]:
            e = Env(dict(zip(in_names, types)), {**consts(), **values})
            for effect in effects:
                effect(e)
            drawn |= e.drawn
            if inner is not None:   # its named layers, with the arguments of this call
                inner.update({n: ("leaf", Call(info[1].kind, info[1].bound(e.bind)), info[2])
                              for n, info in e.layers.items() if info[0] == "leaf"})
            return [e.vars[v] for v in out_vars]
        blk = Block(name, params, text, outputs, len(ins), in_helper, self.depth + 1)
        b.blocks.append(blk)
        return blk

    def layer_param_stage(self, param: str) -> None:
        """`h = v -> f`: apply the layer a block parameter holds (its default or the call's)."""
        floats = [v for v, t in self.env.vars.items() if t.dtype == "float"]
        if not floats:
            return
        src = self.draw(st.sampled_from(floats))
        out = self.b.fresh("h")
        # sometimes the layer is chosen by `if else` on the block's width: `(f if c > 3 else tanh)`
        k = self.draw(st.integers(0, 6)) if self.draw(st.booleans()) else None

        def effect(e: Env):
            chosen = k is None or e.bind["c"] > k
            kind = e.bind[param].text if chosen else "tanh"
            (e.vars[out],) = infer(Call(kind, {}), [e.vars[src]], e.bind)
            e.drawn.update({kind, "layer_default_param" if chosen else "ifelse_layer"})
            if k is not None:
                e.drawn.add("ifelse_layer")
        stage = param if k is None else f"({param} if c > {k} else tanh)"
        self.emit(f"{out} = {src} -> {stage}", effect)
        self.use(src)
        self.new_var(out)

    def alias_stage(self, t: T, kinds: dict, bind: dict, in_helper: bool) -> Stage | None:
        """The right side of `block Name(c) = ...`: one layer or a list."""
        body = type(self)(self.b, Env({"x": t}, dict(bind)), self.depth + 1, in_helper, kinds)
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
