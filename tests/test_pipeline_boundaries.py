"""Stage boundaries that carry several tensors (place/partition.py, train/pipeline_module.py).

One float tensor, the activation, crosses a boundary with the integer and bool tensors that later
layers still read (token ids, an attention mask, positions) where it is a whole block's output;
a second float (a residual) never crosses. The stages run here the way DeepSpeed's pipeline
engine runs them (tests/pipeline_engine.py): copies across each boundary, gradients sent back
for the float tensors only. Training bert_base as two stages under the runner is in
tests/train/test_pipeline_runner.py.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.emit.module import load_module
from nnspec.lang.config import ParallelSpec
from nnspec.place.partition import partition, units_of

from .differential.inputs import draw_inputs
from .differential.specgen import specs
from .pipeline_engine import NoGradient, check_against_model, float_loss, run_stages

SPECS = Path(__file__).resolve().parent.parent / "specs"
# bert_base's structure at a size that runs in a moment
SMALL_BERT = dict(layers=3, hidden=16, heads=2, intermediate_size=32, vocab_size=40, seq=8,
                  max_positions=8, dropout_p=0.0)


def bert_inputs(batch: int = 3, seq: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (batch, seq), generator=gen)
    mask = (torch.arange(seq) < torch.tensor([[seq], [5], [3]][:batch])).long()
    return [ids * mask, mask]


def test_bert_base_is_cut_between_encoder_layers_with_its_mask():
    part = units_of(nnspec.load(SPECS / "bert_base.nn").ir)
    cuts = part.cut_points()
    assert [part.units[i].label for i in cuts] == \
        [f"encoder.layer.{i}" for i in range(12)] + ["(select)"]
    for i in cuts[:-1]:
        crossing = part.live[i - 1]
        assert [(v.type.dtype, v.type.shape) for v in crossing] == \
            [("long", (128,)), ("float", (128, 768))]
        assert crossing[0] is part.inputs[1]  # the model's attention_mask
    # the last boundary: the encoder's output alone (the mask is read no more)
    assert [v.type.dtype for v in part.live[cuts[-1] - 1]] == ["float"]
    # inside the embeddings the ids and the mask would cross too, but the word embeddings wait
    # for the position embeddings (not a whole block's output: they stay on one stage)
    inside = [u.index for u in part.units if u.path.startswith("embeddings.")]
    assert not set(inside) & set(cuts)


def test_bert_base_two_stages_hold_half_its_parameters_each():
    spec = nnspec.load(SPECS / "bert_base.nn", sets={"parallel.pipeline_stages": 2})
    part, total = spec.partition, spec.summary()["params"]
    held = [part.stage_params(s) for s in range(2)]
    assert held == [52_188_672, 57_293_568] and sum(held) == total
    assert all(abs(h - total / 2) <= 0.1 * total / 2 for h in held)
    assert part.stage_units(1)[0].label == "encoder.layer.4"
    assert [v.hint for v in part.crossing(0)] == ["attention_mask", "encoder_layer"]
    assert part.boundary(0).type.shape == (128, 768)
    stage = spec.summary()["pipeline"][0]
    assert stage["sends"] == [128, 768]
    assert stage["sends_also"] == [{"name": "attention_mask", "dtype": "long", "shape": [128]}]
    assert ("Pipeline stage 0: embeddings.word_embeddings .. encoder.layer.3 (12 layers, "
            "52,188,672 params, sends (B, 128, 768) + attention_mask (B, 128) long)"
            in spec.summary_table())


def test_bert_base_four_stages_by_parameters():
    spec = nnspec.load(SPECS / "bert_base.nn", sets={"parallel.pipeline_stages": 4})
    part = spec.partition
    assert [part.stage_units(s)[0].label for s in range(4)] == \
        ["embeddings.word_embeddings", "encoder.layer.0", "encoder.layer.4", "encoder.layer.8"]
    assert max(part.stage_params(s) for s in range(4)) == 28_942_080


def test_a_boundary_inside_the_embeddings_is_refused():
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.load(SPECS / "bert_base.nn", sets={
            "parallel.pipeline_stages": 2,
            "parallel.stage_boundaries": ("embeddings.position_embeddings",)})
    text = str(err.value)
    assert "error[E0711]" in text and "would cut 3 edges" in text
    assert "only where it is the output of a whole block" in text
    assert "help: place stages on block boundaries: encoder.layer.0," in text


@pytest.mark.parametrize("bounds", [[0, 9], [0, 10], [0, 8, 10], [0, 9, 10, 11]])
def test_small_bert_stages_compute_the_model_and_its_gradients(bounds):
    spec = nnspec.load(SPECS / "bert_base.nn", **SMALL_BERT)
    part = units_of(spec.ir)
    part.bounds = bounds + [len(part.units)]
    assert set(bounds[1:]) <= set(part.cut_points())
    sent = check_against_model(spec, part, bert_inputs())
    # the mask crosses as it is before an encoder layer; before the pooler the output alone
    for start, tensors in zip(bounds[1:], sent):
        if part.units[start].label.startswith("encoder.layer."):
            assert [t.dtype for t in tensors] == [torch.long, torch.float64]
            assert torch.equal(tensors[0], bert_inputs()[1])
        else:
            assert torch.is_tensor(tensors) and tensors.dtype == torch.float64


DERIVED = """
block Layer(n, heads) {
  in x, keep, pos
  qs = x -> q: linear(n)
  ks = x -> k: linear(n)
  vs = x -> v: linear(n)
  a = sdpa(qs, ks, vs, mask=keep, heads=heads)
  p = pos -> pe: embedding(16, n)
  out (a -> o: linear(n)) + x + p -> norm: layernorm
}

model enc(n = 8) {
  input ids: long[6]
  keep = ids -> ne(0)
  pos = ids -> positions
  h = ids -> emb: embedding(20, n) -> layers: Layer(keep, pos, n, 2) * 3
  out (h -> head: linear(n)) + h
}
"""


def test_integer_tensors_the_model_computes_cross_beside_the_activation():
    # a bool mask and long positions computed from the ids cross every boundary between the
    # layers; the top-level residual `h` keeps the head and the sum on one stage
    spec = nnspec.loads(DERIVED, name="enc.nn")
    part = units_of(spec.ir)
    assert [part.units[i].label for i in part.cut_points()] == \
        ["layers.0", "layers.1", "layers.2", "head"]
    assert [v.type.dtype for v in part.live[part.cut_points()[0] - 1]] == ["bool", "long", "float"]
    ids = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 1, 2, 9, 8, 0]])
    for bounds in ([0, 3], [0, 4, 5], [0, 3, 4, 5, 6]):
        part.bounds = bounds + [len(part.units)]
        sent = check_against_model(spec, part, [ids])
        assert [t.dtype for t in sent[0]] == [torch.bool, torch.long, torch.float64]


NO_GRAD_YET = """
model m {
  input x: float[4, 6]
  input ids: long[4]
  h = x -> act: relu
  out (ids -> emb: embedding(10, 6)) + (h -> fc: linear(6))
}
"""


def test_an_activation_that_needs_no_gradient_does_not_break_the_backward():
    # stage 0 sends (ids, relu(x)): no weight is behind relu(x), and DeepSpeed's backward over
    # it would fail; the stage's last layer makes it a leaf that takes the gradient
    spec = nnspec.loads(NO_GRAD_YET, name="m.nn")
    part = partition(spec.ir, ParallelSpec(pipeline_stages=2, stage_boundaries=("emb",)))
    x, ids = torch.randn(2, 4, 6, dtype=torch.float64), torch.randint(0, 10, (2, 4))
    check_against_model(spec, part, [x, ids])
    generated = load_module(spec.pipeline_source())
    model = generated.Model().double()
    with pytest.raises(RuntimeError, match="does not require grad"):
        run_stages(part, generated.LAYERS, model, [x, ids], float_loss)


# no shrinking: the failing spec is printed whole, and shrinking one takes minutes
RANDOM = settings(max_examples=80, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_random_specs_run_as_stages_at_every_cut_point():
    """Generated specs of every construct (tests/differential/specgen.py), cut at each of their
    first cut points, compute the model's outputs and gradients as two stages."""
    carried: list[int] = []

    @RANDOM
    @given(specs())
    def one(generated):
        with tempfile.TemporaryDirectory() as folder:
            spec = nnspec.load(generated.write(Path(folder)))
        part = units_of(spec.ir)
        for cut in part.cut_points()[:3]:
            live = part.live[cut - 1]
            assert sum(v.type.dtype == "float" for v in live) == 1
            part.bounds = [0, cut, len(part.units)]
            torch.set_default_dtype(torch.float64)
            try:
                inputs = draw_inputs(spec.ir, torch.Generator().manual_seed(0))
                sent = check_against_model(spec, part, inputs)
            except NoGradient:
                continue  # read for its shape only: DeepSpeed would refuse this cut too
            except AssertionError as err:
                raise AssertionError(f"{err}\ncut before {part.units[cut].label} of:\n"
                                     f"{generated.show()}") from None
            finally:
                torch.set_default_dtype(torch.float32)
            carried.append(len(sent[0]) if isinstance(sent[0], tuple) else 1)

    one()
    # few of these draw tensors beside the activation: side_tensor_specs below does
    assert len(carried) > 20


@st.composite
def side_tensor_specs(draw) -> tuple[str, int, bool]:
    """A random encoder whose blocks read integer tensors besides the activation: a mask given
    as an input or computed from the ids (long or bool), positions likewise, the embeddings in an
    opened block or at the top, a residual around the head or not. Returns the text and where
    stages may start."""
    n, seq, layers = draw(st.sampled_from([4, 8])), draw(st.integers(2, 5)), draw(st.integers(1, 3))
    inputs, lines = [f"input ids: long[{seq}]"], []
    mask = draw(st.sampled_from(["none", "input", "ne"]))
    if mask == "input":
        inputs.append(f"input mask: long[{seq}]")
    elif mask == "ne":
        lines.append("mask = ids -> ne(0)")
    pos = draw(st.sampled_from(["none", "input", "positions"]))
    if pos == "input":
        inputs.append(f"input pos: long[{seq}]")
    elif pos == "positions":
        lines.append("pos = ids -> positions")
    params = ["x"] + ["mask"] * (mask != "none") + ["pos"] * (pos != "none")
    body = ["qs = x -> q: linear(n)", "ks = x -> k: linear(n)", "vs = x -> v: linear(n)",
            "a = sdpa(qs, ks, vs, heads=2" + (", mask=mask)" if mask != "none" else ")")]
    total = "(a -> o: linear(n)) + x"
    if pos != "none":
        body.append(f"p = pos -> pe: embedding({seq}, n)")
        total += " + p"
    body.append(f"out {total} -> norm: layernorm")
    blocks = "block Layer(n) {\n  in " + ", ".join(params) + "\n" + \
        "".join(f"  {line}\n" for line in body) + "}\n"
    opened = draw(st.booleans())
    if opened:  # the embeddings opened up, as BERT's are
        blocks += ("block Embed(n) {\n  in ids\n  w = ids -> words: embedding(20, n)\n  out w + "
                   "(ids -> ne(0) -> cast(dtype=\"float\") -> unsqueeze(-1)) -> ln: layernorm\n}\n")
        lines.append("h = ids -> emb: Embed(n)")
    else:
        lines.append("h = ids -> emb: embedding(20, n)")
    lines.append(f"h = h -> layers: Layer({', '.join(params[1:] + ['n'])}) * {layers}")
    # a residual around the head: the sum after it is never a stage's start
    lines.append("out (h -> head: linear(n)) + h" if draw(st.booleans()) else
                 "out h -> head: linear(3)")
    text = blocks + f"model enc(n = {n}) {{\n" + "".join(f"  {x}\n" for x in inputs + lines) + "}\n"
    # inside the opened embeddings the sum may start a stage only when nothing crosses beside it
    inside = ["emb.ln"] if opened and mask == pos == "none" else []
    return text, inside + [f"layers.{i}" for i in range(layers)] + ["head"]


@settings(RANDOM, max_examples=25)
@given(side_tensor_specs())
def test_random_encoders_are_cut_between_their_layers(drawn):
    text, expected = drawn
    spec = nnspec.loads(text, name="enc.nn")
    part = units_of(spec.ir)
    assert [part.units[i].label for i in part.cut_points()] == expected, text
    gen = torch.Generator().manual_seed(1)
    inputs = []
    for v in part.inputs:
        (seq,) = v.type.shape
        if v.hint == "mask":
            inputs.append((torch.arange(seq) < torch.tensor([[seq], [1]])).long())
        else:
            inputs.append(torch.randint(0, seq, (2, seq), generator=gen))
    for cut in part.cut_points():
        part.bounds = [0, cut, len(part.units)]
        sent = check_against_model(spec, part, inputs)
        side = [t.dtype for t in sent[0][:-1]] if isinstance(sent[0], tuple) else []
        assert all(not d.is_floating_point for d in side)
        assert bool(side) == (cut < part.cut_points()[-1] and len(part.live[cut - 1]) > 1)
