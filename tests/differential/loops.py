"""Loops and names in generated lists: named, quoted and f-string item names, comprehensions over
range, a list and enumerate (with `when`, a loop variable in an argument, and `*` splices), `*`
splices in list displays, and functions (mul) standing in a list.

Every comprehension is expanded here, in Python, into the items the checker will see, so its
types are computed the same way as a list's (the item must fit its own output to repeat)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from nnspec.layers import T

from .pieces import Env, Invalid, Stage, call_stage
from .recipes import Call

if TYPE_CHECKING:
    from .body import Body

LOOP_CONSTRUCTS = frozenset({
    "named_item", "quoted_name", "fstring_name", "comprehension_range", "comprehension_list",
    "comprehension_enumerate", "comprehension_when", "comprehension_splice", "list_splice",
    "function_in_list", "loop_var_argument", "quoted_statement"})


def _tagged(stage: Stage, *constructs: str) -> Stage:
    """`stage`, recording `constructs` as drawn whenever it runs."""
    inner = stage.apply

    def apply(ins, e):
        e.drawn.update(constructs)
        return inner(ins, e)
    stage.apply = apply
    return stage


def name_items(body: Body, items: list[Stage]) -> None:
    """Name some items of a list that is not repeated (a repeat would repeat the names)."""
    for item in items:
        if item.spliced or item.name or body.draw(st.integers(0, 3)) == 0:   # most items: named
            continue
        pick = body.draw(st.sampled_from(["named_item", "quoted_name", "fstring_name"]))
        n = body.b.fresh("")
        item.name = {"named_item": f"it{n}", "quoted_name": f'"it-{n}"',
                     "fstring_name": f'f"it{{{n} + 1}}_{n}"'}[pick]
        item.list_item = True
        _tagged(item, pick)


def quoted_stage(body: Body, call: Call) -> Stage:
    """`-> "layer-3": linear(4)` in a flow: a quoted name (not reusable by name, so unrecorded)."""
    stage = _tagged(call_stage(call), "quoted_statement")
    n = body.b.fresh("")
    stage.name = f'"q-{n}"' if body.draw(st.booleans()) else f'f"q{{{n} * 2}}-{n}"'
    return stage


def splice_pair(body: Body, items: list[Stage]) -> list[Stage]:
    """`[a, *[b, c], d]`: two neighbouring items spliced in from a list display."""
    if len(items) < 2 or body.draw(st.integers(0, 2)) != 0:
        return items
    j = body.draw(st.integers(0, len(items) - 2))
    pair = items[j:j + 2]
    if any(i.spliced for i in pair) or all(i.cond is not None for i in pair):
        return items   # (a splice with an item always there is never empty)

    def apply(ins, e):
        e.drawn.add("list_splice")
        return body._seq(pair, ins, e)
    text = "*[" + ", ".join(i.full() for i in pair) + "]"
    return items[:j] + [Stage(text, apply, spliced=True)] + items[j + 2:]


def comprehension_stage(body: Body, t: T) -> Stage | None:
    """`[ITEM for v in ITER]` in one of its forms, ITEM fitting its own output."""
    env = body.env
    var = body.b.fresh("i")
    form = body.draw(st.sampled_from(["range", "list", "enumerate"]))
    if form == "range":
        a, n = body.draw(st.integers(0, 2)), body.draw(st.integers(1, 4))
        step = body.draw(st.sampled_from([1, 1, 2]))
        values = list(range(a, a + n * step, step))
        head = (f"range({a + n * step})" if a == 0 and step == 1 else
                f"range({a}, {a + n * step})" if step == 1 else f"range({a}, {a + n * step}, {step})")
        targets, index = var, values
    else:
        values = body.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True))
        head = "[" + ", ".join(map(str, values)) + "]"
        targets, index = var, values
        if form == "enumerate":
            idx = body.b.fresh("k")
            head, targets = f"enumerate({head})", f"{idx}, {var}"
    constructs = {f"comprehension_{form}"}
    if t.dtype == "float" and body.draw(st.integers(0, 2)) == 0:
        item = call_stage(Call("mul", {"other": 1.0}))   # other= is written from the loop name
        item.text = f"mul(other={var} * 0.5 + 1.0)"
        constructs |= {"function_in_list", "loop_var_argument"}
    else:
        call = body.draw_call(t, sequential=True, allow_extras=False, listed=True)
        if call is None:
            return None
        item = call_stage(call)
    items = [item]
    if body.draw(st.integers(0, 2)) == 0:
        second = body.draw_call(t, sequential=True, allow_extras=False, listed=True)
        if second is not None:
            items.append(call_stage(second))
    try:
        out = body._seq(items * 2, [t], Env(dict(env.vars), dict(env.bind)))
    except Invalid:
        return None
    if out != [t]:
        return None
    keep = [True] * len(values)
    if body.draw(st.booleans()) and len(values) > 1:
        k = body.draw(st.integers(1, len(values) - 1))
        keep = [pos < k for pos in range(len(values))]   # the first k values (a list may repeat)
        cond = f" when {index_name(targets)} < {k}" if form == "enumerate" else None
        if cond is None:   # range and lists: the position is not a loop name, so test the value
            cutoff = sorted(values)[k - 1]
            keep = [v <= cutoff for v in values]
            cond = f" when {var} <= {cutoff}"
        constructs.add("comprehension_when")
    else:
        cond = ""
    tag = body.b.fresh("c")   # names differ from those of another loop in the same body
    if len(items) == 2:
        element = "*[" + ", ".join(_text(i, var, tag, n) for n, i in enumerate(items)) + "]"
        constructs.add("comprehension_splice")
    else:
        element = _text(items[0], var, tag, 0)
    text = f"[{element}{cond} for {targets} in {head}]"
    expanded = [i for on in keep if on for i in items]

    def apply(ins, e):
        e.drawn.update(constructs)
        return body._seq(expanded, ins, e)
    return Stage(text, apply)


def index_name(targets: str) -> str:
    return targets.split(",")[0].strip()


def _text(item: Stage, var: str, tag: str, n: int) -> str:
    """An item of the comprehension, named from the loop variable (the loop's values are
    distinct, so the names are); the mul that takes the loop variable stays unnamed."""
    return item.text if item.text.startswith("mul(") else f'f"{tag}_{{{var}}}_{n}": {item.text}'
