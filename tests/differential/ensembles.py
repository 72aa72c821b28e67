"""Random ensembles for the differential test: `ensemble_specs()` draws N copies of one generated
model, 2-3 different generated models on the same inputs, or 2-3 members of which some are
generated blocks and aliases called with drawn values (ensemble_blocks.py; models and blocks
mixed, or blocks only), each ending in one output of the same classes, with every combine rule
and way to vary them; `check_ensemble` compares the built ensemble with the interpreter's (each
member through nnspec.interp, the rule in float64), and model.py's ensemble class with the built
one.

vote is compared exactly. Both sides break a tie between classes at the lowest index, so an exact
tie (two classes that are both 0 after a relu) is compared like any row; a row where a member's
two best classes differ by less than the outputs' rounding could go either way on each side and
is left out (`near_ties`), and the members' own outputs are still compared within rtol.
"""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from nnspec import interp
from nnspec.emit.module import load_module

from .ensemble_blocks import draw_block_member
from .harness import default_dtype, fill_state, relative_error
from .inputs import draw_inputs as batch_inputs
from .recipes import RECIPES, Draw
from .specgen import Builder, Generated, check_generated, draw_inputs, draw_model

COMBINES = ("mean_probs", "mean_logits", "vote", "learned")
VARY = ("seed", "bootstrap", "subset(0.5)")
SHAPES = ("copies", "models", "blocks")   # N copies, a list of models, a list with blocks
ENSEMBLE_CONSTRUCTS = frozenset(
    {"ensemble_copies", "ensemble_models", "ensemble_block_member", "ensemble_block_alias",
     "ensemble_block_args", "ensemble_blocks_only", "ensemble_models_and_blocks",
     "ensemble_block_twice"} | {f"ensemble_{c}" for c in COMBINES}
    | {f"ensemble_vary_{v.split('(')[0]}" for v in VARY})


@st.composite
def ensemble_specs(draw: Draw) -> Generated:
    """A generated spec with an ensemble section (see the module docstring)."""
    b = Builder(draw)
    focus = draw(st.sampled_from(sorted(RECIPES)))
    inputs = draw_inputs(draw, focus)
    classes = draw(st.integers(2, 5))
    shape = draw(st.sampled_from(SHAPES))
    count = draw(st.integers(2, 3))
    if shape == "blocks":
        defs, members, drawn = _with_blocks(b, inputs, focus, classes, count)
    else:
        names = ["m"] if shape == "copies" else [f"m{i}" for i in range(count)]
        defs, drawn = [], {f"ensemble_{shape}"}
        for name in names:  # every model starts with the focus kind (its recipe fits x)
            text, final, _ = draw_model(b, name, inputs, focus, head=classes)
            defs.append(text)
            drawn |= final.drawn
        members = str(count) if shape == "copies" else "[" + ", ".join(names) + "]"
    combine = draw(st.sampled_from(COMBINES))
    vary = draw(st.sampled_from(VARY))
    main, helper = b.text("\n\n".join(defs))
    main += (f"\nensemble {{\n  members = {members}\n  combine = {combine}\n  vary = {vary}\n}}\n")
    drawn |= b.drawn | {f"ensemble_{combine}", f"ensemble_vary_{vary.split('(')[0]}"}
    return Generated(main, helper, frozenset(drawn))


def _with_blocks(b: Builder, inputs: dict, focus: str, classes: int,
                 count: int) -> tuple[list[str], str, set[str]]:
    """`count` members, at least one a block member (ensemble_blocks.py): each entry a new
    model, a new block, or the last block again with other drawn values. The file always has a
    model, the spec's (a block takes its inputs); when the list names none it is no member."""
    draw = b.draw
    defs, entries, drawn = [], [], set()
    blocks, models = [], 0
    listed = draw(st.integers(0, count - 1))   # models in the list; the rest are blocks
    kinds = ["model"] * listed + [draw(st.sampled_from(["block", "again"]))
                                  for _ in range(count - listed)]
    kinds = draw(st.permutations(kinds))
    for kind in kinds:
        if kind == "again" and blocks:
            text, got = blocks[-1].call(draw, classes)
            drawn |= got | {"ensemble_block_twice"}
            entries.append(text)
            continue
        if kind == "model":
            name = f"m{models}"
            models += 1
            text, final, _ = draw_model(b, name, inputs, focus, head=classes)
            defs.append(text)
            drawn |= final.drawn
            entries.append(name)
            continue
        member = draw_block_member(b, inputs, focus, classes)
        blocks.append(member)
        defs.append(member.text)
        text, got = member.call(draw, classes)
        drawn |= got
        entries.append(text)
    if not models:   # the spec's model: the inputs the block members take
        text, _, _ = draw_model(b, "m0", inputs, focus, head=classes)
        defs.append(text)
        drawn.add("ensemble_blocks_only")
    else:
        drawn.add("ensemble_models_and_blocks")
    return defs, "[" + ", ".join(entries) + "]", drawn


def check_generated_ensemble(g: Generated, seed: int = 0) -> None:
    """`check_ensemble` on a generated spec; a failure's message holds the spec's text."""
    check_generated(g, seed, check_ensemble)


def check_ensemble(spec, seed: int = 0, rtol: float = 1e-10) -> dict:
    """The built ensemble against the interpreter (members within rtol, the combined output
    within rtol or, for vote, exactly), model.py's class against the built module (exactly),
    and the summary's parameters against the module's."""
    combine = spec.settings.ensemble.combine
    with default_dtype(torch.float64):
        model = spec.build().to(torch.float64).eval()
        state = model.state_dict()
        gen = torch.Generator().manual_seed(seed)
        fill_state(state, gen)
        inputs = member_inputs(spec, gen)
        with torch.no_grad():
            built = model(*[x.clone() for x in inputs])
            built_members = model.member_outputs(*[x.clone() for x in inputs])
        try:
            got, got_members = interp.run_ensemble([m.spec.ir for m in spec.members], combine,
                                                   state, inputs)
        except interp.InterpError as err:
            raise AssertionError(f"interpreter: {err}") from err
        for i, (b, g) in enumerate(zip(built_members, got_members)):
            err = relative_error(g, b)
            assert err <= rtol, (f"member {i} ({spec.members[i].name}): built module and "
                                 f"interpreter differ (relative error {err:.3g})")
        if combine == "vote":
            keep = ~near_ties(got_members)
            assert torch.equal(built[keep], got[keep]), \
                f"vote: built {built[keep].tolist()} != interpreter {got[keep].tolist()}"
        else:
            err = relative_error(got, built)
            assert err <= rtol, f"{combine}: built and interpreter differ ({err:.3g})"
        emitted = load_module(spec.source).Model().to(torch.float64).eval()
        emitted.load_state_dict(state, strict=True)
        with torch.no_grad():
            assert torch.equal(emitted(*[x.clone() for x in inputs]), built), \
                "model.py's ensemble computes another output than build()'s"
    unique = {id(p): p.numel() for p in model.parameters()}
    assert spec.summary()["params"] == sum(unique.values())
    return {"members": len(spec.members), "combine": combine}


def member_inputs(spec, gen: torch.Generator) -> list[torch.Tensor]:
    """One batch every member can take: member 0's, with each id the smallest that the members
    drew for it (each draws ids below its own embedding tables)."""
    state = gen.get_state()
    draws = []
    for member in spec.members:
        gen.set_state(state)
        draws.append(batch_inputs(member.spec.ir, gen))
    return [x if x.is_floating_point() or x.dtype == torch.bool else
            torch.stack([d[i] for d in draws]).min(0).values for i, x in enumerate(draws[0])]


def near_ties(outputs: list[torch.Tensor], tol: float = 1e-9) -> torch.Tensor:
    """Rows (over all dims but the last) where some member's two best classes differ by more
    than nothing but less than `tol` of the outputs' scale: rounding may order them either way."""
    near = torch.zeros(outputs[0].shape[:-1], dtype=torch.bool)
    for o in outputs:
        if o.shape[-1] < 2:
            continue
        top = o.topk(2, dim=-1).values
        gap = top[..., 0] - top[..., 1]
        scale = max(o.abs().max().item(), 1.0)
        near |= (gap > 0) & (gap <= tol * scale)
    return near
