"""`tie=` from inside a block to a layer of the model, passed in as a block argument: the built
parameters are one object, the interpreter agrees, parameters count once, and every way to get
it wrong is a located E0322/E0405/E0201 whose help explains the scope rule."""
from __future__ import annotations

import pytest
import torch

import nnspec
from nnspec.ir import iter_params

HEAD = """
block Head(vocab, embed) {
  in h
  out h -> lm_head: linear(vocab, bias=false, tie=embed)
}
"""

# GPT-2's head tied to wte from a block; a block two deep in a list of repeated layers, each of
# which passes `wte` on (so N modules, some of them cached copies, tie to the one layer)
DEEP = HEAD + """
block Layer(width, embed) {
  in h
  h = h -> fc: linear(width)
  out h -> heads: [Head(100, embed), linear(width)]
}
model tied_lm(vocab = 100, width = 32) {
  input ids: long[16]
  h = ids -> wte: embedding(vocab, width)
  h = h -> blocks: [Layer(width, wte)] * 2
  out h -> head: Head(vocab, embed=wte)
}
"""


def test_every_block_instance_shares_the_model_layer():
    spec = nnspec.loads(DEEP)
    model = spec.build()
    wte = model.wte.weight
    assert model.head.lm_head.weight is wte
    assert model.blocks[0].heads[0].lm_head.weight is wte
    assert model.blocks[1].heads[0].lm_head.weight is wte
    unique = sum(p.numel() for p in model.parameters())
    assert spec.summary()["params"] == unique == 100 * 32 + 2 * (32 * 32 + 32 + 100 * 32 + 32)
    # the root holds the three ties, with the leaf paths the state_dict has
    tied = {(spec.ir.child_name(leaf), ".".join(src)) for leaf, _, src, _ in spec.ir.ties}
    assert tied == {("head.lm_head", "wte.weight"), ("blocks.0.heads.0.lm_head", "wte.weight"),
                    ("blocks.1.heads.0.lm_head", "wte.weight")}
    names = {n for n, _ in iter_params(spec.ir)}
    assert set(model.state_dict()) == names


def test_the_interpreter_reads_the_tied_weight_from_its_source():
    from tests.differential.harness import check_spec
    out = check_spec(nnspec.loads(DEEP))
    assert out["outputs"][0] < 1e-10


def test_a_tie_to_a_layer_of_an_enclosing_block():
    """The layer passed in is the enclosing block's own; each call of that block ties to its own."""
    spec = nnspec.loads(HEAD + """
block Lm(vocab) {
  in ids
  h = ids -> wte: embedding(vocab, 8)
  out h -> head: Head(vocab, wte)
}
model two(vocab = 20) {
  input ids: long[4]
  out (ids -> a: Lm(vocab)) + (ids -> b: Lm(vocab))
}
""")
    model = spec.build()
    assert model.a.head.lm_head.weight is model.a.wte.weight
    assert model.b.head.lm_head.weight is model.b.wte.weight
    assert model.a.wte.weight is not model.b.wte.weight
    assert spec.summary()["params"] == 2 * 20 * 8
    model.eval()
    ids = torch.randint(0, 20, (2, 4))
    from tests.differential.harness import check_spec
    assert check_spec(spec)["outputs"][0] < 1e-10
    assert model(ids).shape == (2, 4, 20)


def _error(text: str) -> str:
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="t.nn")
    return str(err.value)


MODEL = """
model gpt(vocab = 50) {{
  input ids: long[8]
  {body}
}}
"""


@pytest.mark.parametrize("body, code, message, help", [
    # a model layer named from inside a block, without passing it: the help says how to pass it
    ("h = ids -> wte: embedding(vocab, 16)\n  out h -> head: Inside(vocab)",
     "E0322", "`tie` names a layer of the block `Inside`, and `wte` is not one",
     "add a parameter `wte` to `Inside`, call `Inside(..., wte=wte)`"),
    # passed, but no such layer
    ("h = ids -> wte: embedding(vocab, 16)\n  out h -> head: Head(vocab, wtx)",
     "E0201", "unknown name `wtx`", "did you mean `wte`?"),
    # passed before the statement that defines it
    ("h = ids -> emb: embedding(vocab, 16) -> head: Head(vocab, wte)\n"
     "  out h, ids -> wte: embedding(vocab, 16)",
     "E0201", "`wte` is used before it is defined", "statements run in order"),
    # a block, not a single layer
    ("h = ids -> wte: embedding(vocab, 16) -> two: Two\n  out h -> head: Head(16, two)",
     "E0322", "`two` is not a single layer", "tie to one layer inside it, e.g. `tie=two.LAYER`"),
    # shapes differ
    ("h = ids -> wte: embedding(vocab, 16)\n  out h -> head: Head(vocab + 1, wte)",
     "E0405", "cannot tie weights of shape [51, 16] to `wte.weight` of shape [50, 16]",
     "tied weights must have the same shape"),
    # not a layer at all
    ("h = ids -> wte: embedding(vocab, 16)\n  out h -> head: Head(vocab, 3)",
     "E0322", "`tie` names a layer, not", "or a block parameter that the caller passes a layer to"),
])
def test_a_tie_it_cannot_make_says_why_and_what_to_write(body, code, message, help):
    text = HEAD + """
block Inside(vocab) {
  in h
  out h -> lm_head: linear(vocab, bias=false, tie=wte)
}
block Two {
  in x
  out x -> a: linear(16) -> b: linear(16)
}
""" + MODEL.format(body=body)
    err = _error(text)
    assert err.startswith(f"error[{code}]: {message}"), err
    assert " --> t.nn:" in err and "^" in err
    assert help in err.split("help:")[-1], err
