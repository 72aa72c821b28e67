"""Pipeline placement (nnspec/place/partition.py) and the layers emitted for it (emit/stages.py).

The layers chained one after another must compute exactly what the model computes; stages start
only where one float tensor is live (integer ones beside it: tests/test_pipeline_boundaries.py);
balancing is optimal; weights shared across stages are found; the
parameter counts agree with the summary. Bad placements are golden diagnostics
(tests/golden/invalid/pipeline_*.nn); training a pipeline under the runner is in
tests/train/test_pipeline_runner.py.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.place.checkpointing import apply, checkpointed
from nnspec.lang.config import ParallelSpec
from nnspec.emit.module import load_module
from nnspec.place.partition import partition, units_of

SPECS = Path(__file__).resolve().parent.parent / "specs"
CHAINED = ["digits_mlp", "lenet5", "resnet18", "digits_mobilenet", "char_lstm", "tiny_gpt_pipe",
           "shufflenet_v2_x1_0"]
COUNTED = CHAINED + ["resnet50", "vgg16", "mobilenet_v2", "bert_base", "gpt2_small"]


def sample_inputs(spec, batch=2):
    torch.manual_seed(1)
    out = []
    for port in spec.summary()["inputs"].values():
        shape = [batch] + port["shape"]
        out.append(torch.randint(0, 8, shape) if port["dtype"] == "long" else torch.randn(shape))
    return out


@pytest.mark.parametrize("name", CHAINED)
def test_layers_chained_compute_the_model(name):
    spec = nnspec.load(SPECS / f"{name}.nn")
    generated = load_module(spec.pipeline_source())
    torch.manual_seed(0)
    model = generated.Model().eval()
    layers = [cls(model) for cls in generated.LAYERS]
    assert len(layers) == len(spec.partition.units)
    xs = sample_inputs(spec)
    with torch.no_grad():
        want = model(*xs)
        live = xs[0] if len(xs) == 1 else tuple(xs)
        for layer in layers:
            live = layer(live)
    want = want if isinstance(want, tuple) else (want,)
    live = live if isinstance(live, tuple) else (live,)
    assert len(want) == len(live) and all(torch.equal(a, b) for a, b in zip(want, live))
    # every parameter of the model is held by some layer, under the same object
    held = {id(p) for layer in layers for p in layer.parameters()}
    assert held == {id(p) for p in model.parameters()}


KEYWORDS_IN_LISTS = """
model p {
  input x: float[4, 8]
  input mem: float[4, 8]
  input pad: bool[4]
  h = x -> dec: [transformer_decoder_layer(mem, nhead=2, dim_feedforward=8,
                                           memory_key_padding_mask=pad)] * 2
  out h -> att: [multihead_attention(value=mem, key=x, num_heads=2, key_padding_mask=pad)]
}"""


def test_list_items_bind_keyword_tensors_by_name_in_their_layers():
    # a layer of a list is its own pipeline layer; a tensor the spec gave it by keyword (the
    # memory's mask, with the target's type here) must reach the same input as in the model
    spec = nnspec.loads(KEYWORDS_IN_LISTS, name="p.nn")
    generated = load_module(spec.pipeline_source())
    torch.manual_seed(0)
    model = generated.Model().eval()
    layers = [cls(model) for cls in generated.LAYERS]
    x, mem = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    pad = torch.tensor([[False, False, True, True], [False, True, True, True]])
    with torch.no_grad():
        want = model(x, mem, pad)
        live = (x, mem, pad)
        for layer in layers:
            live = layer(live)
    assert torch.equal(live, want)
    assert "memory_key_padding_mask=pad" in spec.source
    assert "key=x, value=mem, key_padding_mask=pad" in spec.source


@pytest.mark.parametrize("name", COUNTED)
def test_units_count_the_models_parameters(name):
    spec = nnspec.load(SPECS / f"{name}.nn")
    part = units_of(spec.ir)
    assert part.stage_params(0) == spec.summary()["params"]


def test_gpt2_cuts_between_blocks_never_inside_residuals():
    part = units_of(nnspec.load(SPECS / "gpt2_small.nn").ir)
    labels = [u.label for u in part.units]
    assert labels[:4] == ["transformer.wte", "transformer.wpe", "(add)", "transformer.drop"]
    assert labels[4:16] == [f"transformer.h.{i}" for i in range(12)]
    assert labels[16:] == ["transformer.ln_f", "lm_head"]
    starts = [part.units[i].label for i in part.cut_points()]
    # not between wte and wpe (the token ids are still needed), nor before the embedding sum
    assert starts == ["transformer.drop"] + [f"transformer.h.{i}" for i in range(12)] + \
        ["transformer.ln_f", "lm_head"]
    assert [t.key for t in part.ties] == ["transformer_wte_weight"]
    tie = part.ties[0]
    assert [part.units[u].label for u in tie.units] == ["transformer.wte", "lm_head"]
    assert tie.size == 50257 * 768


def test_resnet18_stages_start_at_blocks():
    spec = nnspec.load(SPECS / "resnet18.nn")
    part = units_of(spec.ir)
    starts = {part.units[i].label for i in part.cut_points()}
    assert {"layer1.0", "layer1.1", "layer2.0", "layer4.1", "fc"} <= starts


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("method", ["parameters", "uniform", "type:InvertedResidual"])
def test_balancing_is_optimal(stages, method):
    spec = nnspec.load(SPECS / "digits_mobilenet.nn")
    part = partition(spec.ir, ParallelSpec(pipeline_stages=stages, partition=method))
    assert len(part.bounds) == stages + 1 and part.bounds[0] == 0
    assert set(part.bounds[1:-1]) <= set(part.cut_points())

    def weight(u):
        if method == "parameters":
            return u.params
        if method == "uniform":
            return 1
        return int("invertedresidual" in u.kind.lower())

    def heaviest(bounds):
        return max(sum(weight(u) for u in part.units[a:b]) for a, b in zip(bounds, bounds[1:]))

    best = min(heaviest([0, *c, len(part.units)])
               for c in itertools.combinations(part.cut_points(), stages - 1))
    assert heaviest(part.bounds) == best


def test_gpt2_four_stages_by_block_type_hold_three_blocks_each():
    spec = nnspec.load(SPECS / "gpt2_small.nn", sets={"parallel.pipeline_stages": 4,
                                                      "parallel.partition": "type:Block"})
    part = spec.partition
    blocks = [sum(u.kind == "Block" for u in part.stage_units(s)) for s in range(4)]
    assert blocks == [3, 3, 3, 3]
    # the tied head is on the last stage, its embedding on the first: one DeepSpeed tied layer,
    # and each of the two stages counts its copy
    assert [t.key for t in part.cross_stage_ties()] == ["transformer_wte_weight"]
    total = sum(part.stage_params(s) for s in range(4))
    assert total == spec.summary()["params"] + 50257 * 768


def test_explicit_boundaries_place_the_stages():
    spec = nnspec.load(SPECS / "tiny_gpt_pipe.nn",
                       sets={"parallel.stage_boundaries": ("transformer.h.3",)})
    part = spec.partition
    assert part.stage_units(1)[0].label == "transformer.h.3"
    assert part.boundary(0).type.shape == (16, 32)
    # a block path names the first unit inside it
    spec = nnspec.load(SPECS / "resnet18.nn", sets={"parallel.pipeline_stages": 2,
                                                    "parallel.stage_boundaries": ("layer3",)})
    assert spec.partition.stage_units(1)[0].label == "layer3.0"


def test_activation_checkpointing_recomputes_and_keeps_gradients():
    spec = nnspec.load(SPECS / "resnet18.nn", num_classes=10)
    paths, unmatched = checkpointed(spec.ir, ("layer2", "BasicBlock"))
    assert not unmatched and paths[:3] == ["layer1.0", "layer1.1", "layer2"]
    torch.manual_seed(0)
    plain = spec.build()
    again = spec.build()
    again.load_state_dict(plain.state_dict())
    apply(again, paths)
    calls = []
    again.layer2[0].conv1.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    for m in (plain, again):
        m.train()
        m(x).square().mean().backward()
    assert len(calls) == 2  # once forward, once recomputed in the backward pass
    for (name, a), (_, b) in zip(plain.named_parameters(), again.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
    assert list(plain.state_dict()) == list(again.state_dict())


def test_summary_reports_the_stages():
    spec = nnspec.load(SPECS / "gpt2_small.nn", sets={"parallel.pipeline_stages": 4})
    stages = spec.summary()["pipeline"]
    assert [s["layers"][0] for s in stages] == ["transformer.wte", "transformer.h.0",
                                                 "transformer.h.6", "transformer.ln_f"]
    assert stages[0]["sends"] == [1024, 768] and stages[-1]["sends"] is None
    assert stages[0]["tied"] == stages[-1]["tied"] == ["transformer_wte_weight"]
    assert "Pipeline stage 3: transformer.ln_f .. lm_head" in spec.summary_table()
    assert "pipeline" not in nnspec.load(SPECS / "gpt2_small.nn").summary()


TIED_FROM_A_BLOCK = """
block Head(vocab, embed) {
  in h
  out h -> norm: layernorm -> lm_head: linear(vocab, bias=false, tie=embed)
}
model lm(vocab = 40, width = 16) {
  input ids: long[8]
  h = ids -> wte: embedding(vocab, width) -> mid: [linear(width), gelu, linear(width)]
  out h -> head: Head(vocab, wte)
}"""


def test_a_tie_from_inside_a_block_across_stages_is_a_tied_layer():
    # the head's weight is wte's, tied from inside the block `Head` (the root holds the tie, its
    # leaf two levels down): with the head on the last stage it is one DeepSpeed tied layer
    spec = nnspec.loads(TIED_FROM_A_BLOCK, name="lm.nn", sets={"parallel.pipeline_stages": 2})
    part = spec.partition
    assert [t.key for t in part.cross_stage_ties()] == ["wte_weight"]
    (tie,) = part.ties
    assert [part.units[u].label for u in tie.units] == ["wte", "head.lm_head"]
    assert tie.attrs[tie.units[1]] == ["m.weight"]
    assert sum(part.stage_params(s) for s in range(2)) == spec.summary()["params"] + 40 * 16
    generated = load_module(spec.pipeline_source())
    torch.manual_seed(0)
    model = generated.Model().eval()
    assert model.head.lm_head.weight is model.wte.weight
    layers = [cls(model) for cls in generated.LAYERS]
    ids = torch.randint(0, 40, (2, 8))
    with torch.no_grad():
        live = ids
        for layer in layers:
            live = layer(live)
        assert torch.equal(live, model(ids))
