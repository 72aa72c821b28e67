"""Ties from inside a block to a layer of the model, passed in as a block argument (GPT-2's head
tied to `wte`, T5's stacks given the shared embedding): `h = v -> tN: [TieK(l3, 5), ...]`, where

    block TieK(w, n) {
      in x
      out x -> l: linear(n, bias=false, tie=w)
    }

The block is called once, twice in a list (two modules tying to the one layer, with a linear
between them back to the width it takes), or repeated (`* 2`, a cached call copied), and is
sometimes wrapped in a block that passes `w` on (a tie two blocks deep). The target is any
linear or embedding the model has named so far, also one inside a named block (`blk5.l2`).
"""
from __future__ import annotations

from hypothesis import strategies as st

from .pieces import Block, Env, Invalid, infer, weight
from .recipes import Call


def tie_from_block(body) -> None:
    """One statement of the model that ties through a block to one of the model's layers."""
    leaves = [n for n, info in body.env.layers.items() if info[0] == "leaf"
              and info[1].kind in ("linear", "embedding")]
    floats = [v for v, t in body.env.vars.items() if t.dtype == "float"]
    if body.depth or body.in_helper or not leaves or not floats:
        raise Invalid("nothing to tie to")
    target = body.draw(st.sampled_from(leaves))
    _, call, ins = body.env.layers[target]
    rows, cols = weight(call, ins, body.env.bind)
    src = body.draw(st.sampled_from(floats))
    bias = body.draw(st.booleans())
    inner = _block(body, f"  out x -> l: linear(n, bias={str(bias).lower()}, tie=w)")
    name = inner
    if body.draw(st.integers(0, 2)) == 0:   # passed on by an enclosing block
        name = _block(body, f"  out x -> inner: {inner}(w, n)")
    form = body.draw(st.sampled_from(["once", "list"] + (["repeat"] if rows == cols else [])))
    call_text = f"{name}({target}, {rows})"
    stage = {"once": call_text, "list": f"[{call_text}, linear({cols}), {call_text}]",
             "repeat": f"[{call_text}] * 2"}[form]
    out = body.b.fresh("h")
    prep = f"linear({cols}) -> " if body.env.vars[src].shape[-1] != cols else ""
    tied = Call("linear", {"out_features": rows, "bias": bias}, positional=1)

    def effect(e: Env):
        x = e.vars[src]
        if prep:
            (x,) = infer(Call("linear", {"out_features": cols}, positional=1), [x], e.bind)
        now = e.layers.get(target)
        if now is None or weight(now[1], now[2], e.bind) != (rows, cols):
            raise Invalid("tie")
        (o,) = infer(tied, [x], e.bind)
        if form == "list":
            (x,) = infer(Call("linear", {"out_features": cols}, positional=1), [o], e.bind)
            (o,) = infer(tied, [x], e.bind)
        elif form == "repeat":
            (o,) = infer(tied, [o], e.bind)
        e.vars[out] = o
        e.drawn.add("tie_from_block")
        if name != inner or form != "once":
            e.drawn.add("tie_from_block_shared")
    body.emit(f"{out} = {src} -> {prep}{body.b.fresh('t')}: {stage}", effect)
    body.use(src)
    body.new_var(out)


def _block(body, out_line: str) -> str:
    """A top-level block `TieK(w, n)` of one input and this `out` line; never drawn as a block
    by the others (its depth, 0, is no block body's), as its `w` must name a layer."""
    name = body.b.fresh("Tie")
    text = f"block {name}(w, n) {{\n  in x\n{out_line}\n}}"
    body.b.blocks.append(Block(name, [("w", None, False), ("n", 1, False)], text,
                               lambda *a, **k: [], 1, False, 0))
    return name
