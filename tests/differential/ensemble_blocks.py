"""Block members of a generated ensemble: `members = [m0, Ens3(4, p5=true), Head7]` names blocks
of the file with parameter values, and a block member takes the spec model's inputs
(nnspec/ensemble.py). A member here is a block whose `in` names are the model's inputs and whose
body the model generator writes (specgen.draw_body, as a block body: depth 1), ending in
`out h -> reshape([-1]) -> linear(k)` with `k` a parameter the call sets to the class count; or,
on a model of one float or long input, an alias `block Head7(k) = [layer, reshape([-1]),
linear(k)]`. Its other parameters (with and without defaults) are called with drawn values,
replayed on the block's statements and kept only where they still fit, as blocks.py does for a
block called again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from .pieces import Block, Env, Invalid, infer, lit, render
from .recipes import Call
from .body import Body
from .specgen import Builder, draw_body


@dataclass
class BlockMember:
    """A generated block member: its definition, how to recompute what it exercises for other
    values (raises Invalid where they do not fit), and its parameters as pieces.Block holds
    them, for `call`."""

    text: str
    block: Block
    replay: Callable[[dict], set[str]]
    first: dict          # the values it was generated with (k: the class count)
    alias: bool

    def call(self, draw, classes: int) -> tuple[str, set[str]]:
        """The member as the section writes it, with drawn values for the parameters other
        than k (the first values where the drawn ones do not fit), and what it exercises."""
        values = {**self.first}
        for name, first, _ in self.block.params:
            if name == "k" or not draw(st.booleans()):
                continue
            values[name] = draw(st.booleans()) if isinstance(first, bool) else \
                draw(st.integers(1, 6))
        values["k"] = classes
        try:
            drawn = self.replay(values)
        except Invalid:
            values = {**self.first, "k": classes}
            drawn = self.replay(values)
        if values != {**self.first, "k": classes}:
            drawn.add("ensemble_block_args")
        return self.block.call_text(values), drawn


def draw_block_member(b: Builder, inputs: dict, focus: str, classes: int) -> BlockMember | None:
    """An alias member sometimes (one input that an alias can take), else a block member."""
    (only,) = inputs.values() if len(inputs) == 1 else (None,)
    if only is not None and only.dtype in ("float", "long") and b.draw(st.booleans()):
        member = _alias_member(b, only, classes)
        if member is not None:
            return member
    return _block_member(b, inputs, focus, classes)


def _params(b: Builder, classes: int) -> tuple[list[tuple[str, Any, bool]], dict]:
    """k (the class count: no default, the count, or another count as its default) and up to
    two more int or bool parameters; those without a default first, as a call gives them by
    position. Returns pieces.Block's (name, default or first value, has a default) and the
    values the body is generated with."""
    draw = b.draw
    k_default = draw(st.sampled_from([None, classes, classes + 1]))
    params = [("k", classes if k_default is None else k_default, k_default is not None)]
    for _ in range(draw(st.integers(0, 2))):
        value = draw(st.one_of(st.integers(1, 6), st.booleans()))
        params.append((b.fresh("p"), value, draw(st.booleans())))
    params.sort(key=lambda p: p[2])   # stable: k stays first among its kind
    bind = {name: value for name, value, _ in params}
    bind["k"] = classes
    return params, bind


def _head(params: list[tuple[str, Any, bool]]) -> str:
    return ", ".join(f"{p} = {lit(v)}" if d else p for p, v, d in params)


def _block_member(b: Builder, inputs: dict, focus: str, classes: int) -> BlockMember:
    params, bind = _params(b, classes)
    kinds = {p: "bool" if isinstance(v, bool) else "int" for p, v in bind.items()}
    body = draw_body(b, inputs, focus, bind, kinds, 1)
    last = body.class_source()
    name = b.fresh("Ens")
    lines = [f"  in {', '.join(inputs)}"] + [f"  {line}" for line in body.lines]
    lines.append(f"  out {last} -> reshape([-1]) -> linear(k)")
    text = f"block {name}({_head(params)}) {{\n" + "\n".join(lines) + "\n}"
    effects = list(body.effects)

    def replay(values: dict) -> set[str]:
        e = Env(dict(inputs), {**values, **b.const_values()})
        for effect in effects:
            effect(e)
        return e.drawn | {"ensemble_block_member"}
    block = Block(name, params, text, lambda *a: [], len(inputs), False, 1)
    return BlockMember(text, block, replay, bind, False)


def _alias_member(b: Builder, t, classes: int) -> BlockMember | None:
    """`block Head(k, ...) = [layer, reshape([-1]), linear(k)]` on the model's one input: the
    layer drawn for t (it may name the parameters), an embedding for ids."""
    params, bind = _params(b, classes)
    kinds = {p: "bool" if isinstance(v, bool) else "int" for p, v in bind.items()}
    body = Body(b, Env({"x": t}, dict(bind)), 1, False, kinds)
    body.alias = True
    if t.dtype == "long":
        call = Call("embedding", {"num_embeddings": b.draw(st.integers(4, 8)),
                                  "embedding_dim": b.draw(st.integers(1, 5))}, positional=2)
    else:
        call = body.draw_call(t, sequential=True, allow_extras=False, listed=True)
        if call is None or call.before:
            return None
    try:
        (out,) = infer(call, [t], bind)
    except Invalid:
        return None
    if out.dtype != "float":
        return None
    name = b.fresh("Head")
    text = f"block {name}({_head(params)}) = [{render(call)}, reshape([-1]), linear(k)]"

    def replay(values: dict) -> set[str]:
        (o,) = infer(call, [t], {**values, **b.const_values()})
        if o.dtype != "float":
            raise Invalid("alias output")
        return {call.kind, "ensemble_block_member", "ensemble_block_alias"}
    block = Block(name, params, text, lambda *a: [], 1, False, 1, alias=True)
    return BlockMember(text, block, replay, bind, True)
