"""Attention-head pruning: the smaller dense model computes what the original computes with the
removed heads' outputs zeroed (float64), the parameter count drops by the removed rows and
columns, the written-back spec loads the cut weights strictly, and `nnspec compress` runs it."""
import json
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.compress.attention import find_attentions
from nnspec.compress.errors import CompressError
from nnspec.compress.heads import choose_heads, head_scores, prune_heads

SPECS = Path(__file__).resolve().parents[2] / "specs"

# BERT-like: three q/k/v linears, a padding mask, the output projection in the same block
BERTISH = """
block SelfAttention(hidden, heads) {
  in x, mask
  q = x -> query: linear(hidden)
  k = x -> key: linear(hidden)
  v = x -> value: linear(hidden)
  a = sdpa(q, k, v, mask=mask, heads=heads)
  out a -> dense: linear(hidden)
}

model bertish(hidden = 24, heads = 6) {
  input x: float[5, 24]
  input mask: long[5]
  h = layer0: SelfAttention(x, mask, hidden, heads)
  h = h -> ln: layernorm
  out layer1: SelfAttention(h, mask, hidden, heads)
}

compress {
  prune = heads(0.5, norm=1)
}
"""


def _masked(model, spec, keep):
    """The original model with the output-projection columns of the removed heads zeroed."""
    masked = model.__class__()
    masked.load_state_dict(model.state_dict())
    for a in find_attentions(spec.ir):
        if a.name in keep:
            gone = [h for h in range(a.heads) if h not in keep[a.name]]
            w = masked.get_submodule(a.out).weight
            with torch.no_grad():
                for h in gone:
                    w[:, h * a.head_dim:(h + 1) * a.head_dim] = 0
    return masked


def _check_equivalent(spec, inputs):
    torch.manual_seed(0)
    model = spec.build().eval()
    keep = choose_heads(model, spec, spec.compress_plan.prune)
    pruned, text, new_spec = prune_heads(model, spec, spec.compress_plan.prune)
    reference = _masked(model, spec, keep).double()
    inputs = tuple(t.double() if t.is_floating_point() else t for t in inputs)
    with torch.no_grad():
        want = reference(*inputs)
        got = pruned.double()(*inputs)
    want, got = (want if isinstance(want, tuple) else (want,)), \
        (got if isinstance(got, tuple) else (got,))
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
    # without the mask the function differs: the removed heads did contribute
    with torch.no_grad():
        assert (model.double()(*inputs) - reference(*inputs)).abs().max() > 1e-4
    return model, keep, pruned, text, new_spec


def test_gpt_heads_are_removed_exactly(tmp_path):
    spec = nnspec.load(SPECS / "tiny_gpt_heads.nn")
    ids = torch.randint(0, 32, (3, 16))
    model, keep, pruned, text, new_spec = _check_equivalent(spec, (ids,))
    assert set(keep) == {"transformer.h.0.attn", "transformer.h.1.attn"}
    assert all(len(k) == 2 for k in keep.values())
    # the kept heads are the two with the largest L2 norm of q/k/v rows and c_proj columns
    attn = model.transformer.h[0].attn
    w, proj = attn.c_attn.weight.detach(), attn.c_proj.weight.detach()
    norms = [sum(w[o + h * 8:o + h * 8 + 8].pow(2).sum() for o in (0, 32, 64))
             + proj[:, h * 8:h * 8 + 8].pow(2).sum() for h in range(4)]
    want = sorted(torch.tensor(norms).topk(2).indices.tolist())
    assert keep["transformer.h.0.attn"] == want
    assert torch.allclose(head_scores(model, find_attentions(spec.ir)[0]).double(),
                          torch.tensor(norms).double().sqrt())
    # 2 of 4 heads of width 8 gone in each of 2 blocks: q/k/v rows (+ biases), c_proj columns
    removed = 2 * (3 * 16 * 32 + 3 * 16 + 32 * 16)
    assert sum(p.numel() for p in model.parameters()) - \
        sum(p.numel() for p in pruned.parameters()) == removed
    assert new_spec.summary()["params"] == sum(p.numel() for p in pruned.parameters())
    assert "c_attn: linear(48) -> split(16, dim=2)" in text and "heads=2" in text
    assert "use \"blocks/gpt.nn\"" not in text.replace("# use", "")   # inlined, edited
    # the new spec stands alone: loaded from its own file, it builds and loads strictly
    path = tmp_path / "tiny_gpt_heads_pruned.nn"
    path.write_text(text)
    rebuilt = nnspec.load(path).build().eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)


def test_three_projections_and_a_mask():
    spec = nnspec.loads(BERTISH, name="bertish.nn")
    x, mask = torch.randn(2, 5, 24), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    model, keep, pruned, text, new_spec = _check_equivalent(spec, (x, mask))
    assert [len(k) for k in keep.values()] == [3, 3]
    assert pruned.layer0.query.out_features == pruned.layer1.value.out_features == 12
    assert pruned.layer0.dense.in_features == 12
    assert "query: linear(12)" in text and "heads=3" in text
    removed = 2 * (3 * (12 * 24 + 12) + 24 * 12)
    assert sum(p.numel() for p in model.parameters()) - \
        sum(p.numel() for p in pruned.parameters()) == removed


def test_one_block_pruned_differently_is_refused():
    two = BERTISH.replace("prune = heads(0.5, norm=1)",
                          "prune = [heads(0.5, on=[\"layer0\"]), heads(0.5, on=[\"layer1\"])]")
    nnspec.loads(two, name="bertish.nn")   # alike: one block can say it
    with pytest.raises(nnspec.SpecError, match="E0724"):
        nnspec.loads(two.replace("on=[\"layer1\"])", "on=[\"layer1\"], norm=1)")
                     .replace("heads(0.5, on=[\"layer1\"]", "heads(0.2, on=[\"layer1\"]"),
                     name="bertish.nn")
    # the runtime backstop: the same block asked to keep different heads is refused
    spec = nnspec.loads(two, name="bertish.nn")
    a0, a1 = find_attentions(spec.ir)
    from nnspec.compress.heads import written_back

    with pytest.raises(CompressError, match="written once"):
        written_back(spec, [a0, a1], {a0.name: [0, 1, 2], a1.name: [0, 1]})


def test_bert_base_reports_why_its_heads_cannot_be_pruned():
    text = (SPECS / "bert_base.nn").read_text() + "\ncompress {\n  prune = heads(0.5)\n}\n"
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="bert_heads.nn", layers=2)
    assert "E0724" in str(err.value) and "output projection" in str(err.value)


def test_compress_command_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["compress", str(SPECS / "tiny_gpt_heads.nn"), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["before"]["params"] - report["after"]["params"] == 2 * (3 * 16 * 32 + 3 * 16
                                                                          + 32 * 16)
    assert report["after"]["accuracy"] >= report["before"]["accuracy"] - 0.05
    spec = nnspec.load(out / report["pruned_spec"])
    from safetensors.torch import load_file

    spec.build().load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
