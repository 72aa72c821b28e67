"""Layers declared before they run: `const lN = linear(k)`, then `h = v -> lM: linear(j) -> lN`.
The declared layer is built where the flow applies it but comes before `lM` among the children
(and in state_dict), so the built module and the interpreter must agree on names that are not in
the order the layers run."""
from __future__ import annotations

from hypothesis import strategies as st

from .pieces import Env, Stage, call_stage, render
from .recipes import Call


def declared_statement(body, src: str, call: Call, stage: Stage) -> None:
    """`const NAME = call` and a flow from `src` through a new named linear, then NAME."""
    before = call_stage(Call("linear", {"out_features": body.draw(st.integers(1, 6))},
                             positional=1), body.b.fresh("l"))
    out = body.b.fresh("h")

    def effect(e: Env):
        (x,) = before.apply([e.vars[src]], e)
        (e.vars[out],) = stage.apply([x], e)
        e.drawn.add("declared_layer")
    body.emit(f"const {stage.name} = {render(call)}\n"
              f"  {out} = {src} -> {before.full()} -> {stage.name}", effect)
    body.use(src)
    body.new_var(out)
