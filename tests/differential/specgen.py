"""Random valid .nn specs, drawn by hypothesis from every layer kind and every language construct.

`specs()` is a strategy of `Generated` specs: a main file (and sometimes a helper file that it
includes with `use`) holding constants, blocks (called several times with equal and with
different arguments, nested, aliases), and one model (parameters with defaults, several inputs
and outputs, flows, lists, repeats, `when` true and false, shared layers, tied weights (also
from inside a block, to a model layer passed in: outer_ties.py), layers declared before they run
(declared.py), branches merged by split, chunk, cat, +, -, *, / and @, local constants, keyword
tensors), and sometimes a `weights` section that check_generated round-trips a checkpoint
through (weights_roundtrip.py). The k/v cache path has its own generator, decoders.py.

The generator is valid by construction: it tracks the type of every tensor it writes, running
each kind's own `infer` on the arguments it draws (recipes.py says how to draw them), and records
every statement as its text plus a function that recomputes its types. A block is generated for
its first call; a further call with other arguments or input types replays the block's
statements under the new binding and is kept only if they still fit. A generated spec that
`nnspec check` refuses is a bug of the generator.

The parts: recipes.py (one recipe per layer kind), pieces.py (text and types of the pieces),
body.py (the statements of a model or block body), blocks.py (block calls, blocks, aliases), and
here the top-level definitions, the model, and `check_generated`.

`Generated.drawn` names the kinds and constructs that the spec actually exercises (a layer in a
`when false` stage is not counted), so that a test can assert that a run covers all of them.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import nnspec

from .body import Body
from .exprs import ARITH_CONSTRUCTS, constant_text
from .harness import check_spec
from .loops import LOOP_CONSTRUCTS
from .pieces import Block, Env, Invalid, call_stage, infer, lit, render
from .recipes import RECIPES, Call, Draw, Expr
from .weights_roundtrip import check_roundtrip, weights_section

HELPER = "helper.nn"
CONSTRUCTS = frozenset({
    "block_same_args", "block_different_args", "block_nested", "block_alias", "block_two_inputs",
    "block_default_param", "repeat_layer", "repeat_list", "list", "when_true", "when_false",
    "const", "local_const", "model_param", "tie", "shared_layer", "shared_block", "split", "chunk",
    "cat", "add", "sub", "mul", "div", "matmul", "several_inputs", "several_outputs",
    "implicit_output", "include", "keyword_tensor", "tensor_call", "tensor_number", "out_flow",
    "block_several_outputs", "repeat_in_list", "shared_inner_layer", "tie_inner_layer",
    "tensors_in_list", "tie_from_block", "tie_from_block_shared",
    "declared_layer", "weights_section"}) | LOOP_CONSTRUCTS | ARITH_CONSTRUCTS


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
        written = constant_text(self.draw, value)
        if written is not None:
            text, construct = written
            self.drawn.add(construct)
        elif isinstance(value, int) and not isinstance(value, bool) and value > 1 \
                and value % 2 == 0 and self.draw(st.booleans()):
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
    inputs = draw_inputs(draw, focus)
    model, final, outs = draw_model(b, "m", inputs, focus)
    main, helper = b.text(model)
    drawn = set(b.drawn) | final.drawn
    # decided and written without a draw, so the specs drawn stay those of a run without it
    section = weights_section(final) if b.counter % 3 == 0 else None
    if section is not None:
        main += "\n" + section
        drawn.add("weights_section")
    if len(inputs) > 1:
        drawn.add("several_inputs")
    if len(outs) > 1:
        drawn.add("several_outputs")
    return Generated(main, helper, frozenset(drawn))


def draw_inputs(draw: Draw, focus: str) -> dict:
    """The model inputs: one the focus kind takes, and up to two more."""
    first = RECIPES[focus].input_type(draw)
    inputs = {"x": first}
    for i in range(draw(st.integers(0, 2))):
        other = RECIPES[draw(st.sampled_from(sorted(RECIPES)))].input_type(draw)
        inputs[f"x{i + 1}"] = draw(st.sampled_from([first, other]))
    return inputs


def draw_model(b: Builder, name: str, inputs: dict, focus: str,
               head: int | None = None) -> tuple[str, Env, list[str]]:
    """One model's text, the environment its statements leave (what it exercises), and its
    output variables. `head` N: the model ends in one output of N classes (an ensemble
    member's): its last float tensor, flattened, through linear(N)."""
    draw = b.draw
    params: dict[str, str] = {}
    bind: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 2))):
        pname = b.fresh("p")
        bind[pname] = draw(st.one_of(st.integers(1, 6), st.booleans()))
        params[pname] = "bool" if isinstance(bind[pname], bool) else "int"
    body = draw_body(b, inputs, focus, bind, params, 0)
    if head is None:
        out_lines, outs = body.finish(block=False)
    else:
        last = body.class_source()
        out_lines, outs = [f"  out {last} -> reshape([-1]) -> linear({head})"], [last]
    lines = [f"  input {v}: {t.dtype}[{', '.join(map(str, t.shape))}]" for v, t in inputs.items()]
    lines += [f"  {line}" for line in body.lines] + out_lines
    args = ", ".join(f"{n} = {lit(v)}" for n, v in bind.items())
    # what the spec exercises: the model's statements once more, from the start
    final = Env(dict(inputs), {**bind, **b.const_values()})
    for effect in body.effects:
        effect(final)
    if any(re.search(rf"\b{p}\b", line) for p in params for line in body.lines + out_lines):
        final.drawn.add("model_param")
    return f"model {name}({args}) {{\n" + "\n".join(lines) + "\n}", final, outs


def draw_body(b: Builder, inputs: dict, focus: str, bind: dict, params: dict,
              depth: int) -> Body:
    """The statements of a model (depth 0) or of an ensemble's block member (depth 1) on
    `inputs`: the focus kind on x first, an embedding for each long input it left, then 1-5
    statements. `bind` holds the parameters' values and `params` their kinds."""
    body = Body(b, Env(dict(inputs), dict(bind)), depth, False, params)
    body.cursor = "x"
    _focus(body, focus)   # the focus kind first, on the first input: a run draws every kind
    for var, t in inputs.items():
        if t.dtype == "long" and var in body.unused:
            _embed(body, var)
    body.write(b.draw(st.integers(1, 5)))
    return body


def _focus(body: Body, kind: str) -> None:
    """Apply `kind` to the first input, so that a run of N specs draws every kind."""
    recipe = RECIPES[kind]
    t = body.env.vars["x"]
    for _ in range(4):
        args = recipe.args(body.draw, t)
        if args is None:
            continue
        call = recipe.call(body.draw, t, args)
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


def check_generated(g: Generated, seed: int = 0, check=None) -> dict:
    """Write `g` into a temporary folder, load it, and run it through the differential harness
    (or through `check(spec, seed)`, e.g. the ensembles' check).

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
            if check is not None:
                return check(spec, seed)
            compared = check_spec(spec, seed=seed)
            if "weights_section" in g.drawn:
                check_roundtrip(spec)
            return compared
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- the spec:\n{g.show()}") from None
