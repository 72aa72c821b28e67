"""Lists and repeats of blocks that pass two tensors on (`in x, y` ... `out h, y`), as T5 and
ALiBi pass an attention bias from layer to layer: `h, g = (a, b) -> name: Chain(3) * 2`, a list
of calls with other arguments, or an unnamed repeat. The block keeps its inputs' types, so
any number of them chain; its layer parameter `f` defaults to a layer that some calls replace.
"""
from __future__ import annotations

from hypothesis import strategies as st

from .pieces import Block, Env, Invalid


def chain_block(body) -> Block:
    """A new block `ChainN(c, f = relu)`: two tensors in, two of the same types out."""
    b = body.b
    name = b.fresh("Chain")
    act = body.draw(st.sampled_from(["relu", "tanh", "gelu"]))
    text = (f"block {name}(c, f = {act}) {{\n"
            "  in x, y\n"
            "  h = x -> up: linear(c) -> f -> down: linear(size(x, -1))\n"
            f"  out h + y, y {body.draw(st.sampled_from(['* 0.5', '-> tanh', '+ 1.0']))}\n"
            "}")

    def outputs(types, values, drawn, inner=None):
        if len(types) != 2 or types[0] != types[1] or types[0].dtype != "float":
            raise Invalid("chain types")
        drawn.add("chain_repeat")
        return list(types)
    blk = Block(name, [("c", 2, False)], text, outputs, 2, False, body.depth + 1)
    b.blocks.append(blk)
    return blk


def chain_statement(body) -> None:
    """`h, g = (a, b) -> ...` through a repeat or list of a chain block."""
    floats = [v for v, t in body.env.vars.items() if t.dtype == "float"]
    if body.depth or body.in_helper or not floats:
        return
    a = body.draw(st.sampled_from(floats))
    blk = chain_block(body)
    calls = [f"{blk.name}({body.draw(st.integers(1, 4))})"
             for _ in range(body.draw(st.integers(1, 3)))]
    if body.draw(st.booleans()):
        calls[-1] = calls[-1][:-1] + f", f = {body.draw(st.sampled_from(['sigmoid', 'silu']))})"
    form = body.draw(st.sampled_from(["repeat", "list", "unnamed"]))
    if form == "repeat":
        stage = f"{body.b.fresh('layers')}: {calls[0]} * {body.draw(st.integers(1, 3))}"
    elif form == "list":
        stage = f"{body.b.fresh('layers')}: [{', '.join(calls)}]"
    else:
        stage = f"[{', '.join(calls)}]"
    bias, h, g = body.b.fresh("h"), body.b.fresh("h"), body.b.fresh("h")

    def effect(e: Env):
        t = e.vars[bias]
        e.vars[h], e.vars[g] = blk.outputs([e.vars[a], t], {}, e.drawn)
    body.emit(f"{bias} = {a} -> sigmoid", lambda e: e.vars.__setitem__(bias, e.vars[a]))
    body.use(a)
    body.new_var(bias)
    body.emit(f"{h}, {g} = ({a}, {bias}) -> {stage}", effect)
    body.use(bias)
    body.new_var(h, single=False)
    body.new_var(g, single=False)
