"""tensor_plan: which layers tensor parallelism splits (column/row-parallel, heads per rank) and
why the others stay whole, read off the IR of the shipped transformer specs and of small specs
that exercise each rule."""
from __future__ import annotations

import pytest

import nnspec
from nnspec.place.tensor import tensor_plan

from ..conftest import ROOT


def plan_of(name: str, n: int = 2, **overrides):
    spec = nnspec.load(ROOT / "specs" / f"{name}.nn", **overrides)
    return spec, tensor_plan(spec.ir, n)


def by_reason(plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path, why in plan.replicated.items():
        out.setdefault(why, set()).add(path)
    return out


def test_gpt2_small_splits_every_block_megatron_style():
    _, plan = plan_of("gpt2_small")
    expected = {}
    for i in range(12):
        h = f"transformer.h.{i}"
        expected.update({f"{h}.attn.c_attn": "column", f"{h}.attn.c_proj": "row",
                         f"{h}.mlp.c_fc": "column", f"{h}.mlp.c_proj": "row"})
        assert plan.heads[f"{h}.attn"] == 6          # sdpa runs in CausalSelfAttention's forward
        assert plan.sections[f"{h}.attn.c_attn"] == (768, 768, 768)  # fused q/k/v
    assert plan.splits == expected
    assert len(plan.heads) == len(plan.sections) == 12
    assert plan.replicated["transformer.wte"] == \
        "embedding: vocabulary is not split (its weight is tied to lm_head)"
    assert plan.replicated["lm_head"] == "linear: tied to transformer.wte, which stays whole"
    assert plan.replicated["transformer.wpe"] == "position_embedding: positions are not split"
    norms = {p for p, why in plan.replicated.items() if why.startswith("layernorm: ")}
    assert len(norms) == 25 and "transformer.ln_f" in norms
    # two all-reduces per block forward (after c_proj of attn and of mlp), two backward
    fwd = [a for a in plan.allreduces if a.direction == "forward"]
    bwd = [a for a in plan.allreduces if a.direction == "backward"]
    assert len(fwd) == len(bwd) == 24
    assert {a.elements for a in plan.allreduces} == {1024 * 768}


def test_every_layer_with_parameters_is_split_or_replicated_once():
    spec, plan = plan_of("gpt2_small", n_layer=2)
    from nnspec.ir import iter_params

    layers = {name.rsplit(".", 1)[0] for name, _ in iter_params(spec.ir)}
    assert set(plan.splits).isdisjoint(plan.replicated)
    assert set(plan.splits) | set(plan.replicated) == layers


def test_split_parameters_are_the_split_weights_and_column_biases():
    _, plan = plan_of("gpt2_small", n_layer=1)
    e = 768
    # c_attn w+b, attn c_proj w (its bias is added once, after the all-reduce), c_fc w+b, c_proj w
    split = (3 * e * e + 3 * e) + e * e + (4 * e * e + 4 * e) + 4 * e * e
    assert plan.share_under("").params == split
    assert plan.share_under("transformer.h.0.mlp").params == 8 * e * e + 4 * e
    total = nnspec.load(ROOT / "specs/gpt2_small.nn", n_layer=1).summary()["params"]
    assert plan.per_rank_params(total) == total - split // 2


def test_llama_splits_grouped_query_attention_and_swiglu():
    _, plan = plan_of("llama", layers=2, hidden=256, intermediate=512, heads=8, kv_heads=4,
                      vocab_size=1000, seq=64)
    for i in range(2):
        layer = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj"):
            assert plan.splits[f"{layer}.self_attn.{proj}"] == "column"
        assert plan.splits[f"{layer}.self_attn.o_proj"] == "row"
        # gate and up are both column-parallel: silu(gate) * up multiplies matching slices
        assert plan.splits[f"{layer}.mlp.gate_proj"] == plan.splits[f"{layer}.mlp.up_proj"] == \
            "column"
        assert plan.splits[f"{layer}.mlp.down_proj"] == "row"
        assert plan.heads[f"{layer}.self_attn.kv_attention"] == 4
    assert plan.replicated["lm_head"] == \
        "linear: not followed by a row-parallel partner (its output is the model's output)"
    assert plan.replicated["model.embed_tokens"] == "embedding: vocabulary is not split"
    assert not plan.sections


def test_llama_key_value_heads_that_do_not_divide_keep_attention_whole():
    _, plan = plan_of("llama", 8, layers=1, hidden=256, intermediate=512, heads=8, kv_heads=4,
                      vocab_size=1000, seq=64)
    why = "kv_attention: 4 key/value heads do not divide by tensor = 8"
    attn = "model.layers.0.self_attn"
    assert {plan.replicated[f"{attn}.{p}"] for p in ("q_proj", "k_proj", "v_proj", "o_proj")} \
        == {why}
    assert plan.indivisible == {f"{attn}.kv_attention": why}
    assert plan.splits["model.layers.0.mlp.down_proj"] == "row"  # the MLP still splits


def test_bert_base_splits_across_block_boundaries():
    # the attention output projection and the MLP's second linear live in AddNorm blocks,
    # not beside the layers that feed them: the dataflow decides, not the nesting
    _, plan = plan_of("bert_base")
    for i in range(12):
        layer = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            assert plan.splits[f"{layer}.attention.self.{name}"] == "column"
        assert plan.splits[f"{layer}.attention.output.dense"] == "row"
        assert plan.splits[f"{layer}.intermediate.dense"] == "column"
        assert plan.splits[f"{layer}.output.dense"] == "row"
        assert plan.heads[f"{layer}.attention.self"] == 6
    assert len(plan.splits) == 72
    assert plan.replicated["pooler.dense"] == \
        "linear: not followed by a row-parallel partner (its output is the model's output)"
    reasons = by_reason(plan)
    assert reasons["embedding: vocabulary is not split"] == {
        "embeddings.word_embeddings", "embeddings.token_type_embeddings"}


def test_vit_b_16_splits_its_multihead_attention_and_mlp_list():
    _, plan = plan_of("vit_b_16")
    for i in range(12):
        block = f"encoder.layers.encoder_layer_{i}"
        attn = f"{block}.self_attention"
        assert plan.splits[attn] == "column"                 # its in_proj, section by section
        assert plan.sections[attn] == (768, 768, 768)
        assert plan.splits[f"{attn}.out_proj"] == "row"
        assert plan.heads[attn] == 6
        assert plan.splits[f"{block}.mlp.0"] == "column"
        assert plan.splits[f"{block}.mlp.3"] == "row"
    reasons = by_reason(plan)
    assert reasons["conv2d: convolutions are not split by tensor parallelism"] == {"conv_proj"}
    assert reasons["parameter: a free tensor, kept on every rank"] == {
        "class_token", "encoder.pos_embedding"}
    assert plan.replicated["heads.head"].startswith("linear: not followed by a row-parallel")


@pytest.mark.parametrize("name,overrides,where,why", [
    ("gpt2_small", {"n_layer": 1}, "transformer.h.0.attn", "sdpa: 12 heads do not divide by "
     "tensor = 5"),
    ("vit_b_16", {"num_layers": 1}, "encoder.layers.encoder_layer_0.self_attention",
     "multihead_attention: 12 heads do not divide by tensor = 5"),
])
def test_heads_that_do_not_divide_are_reported(name, overrides, where, why):
    _, plan = plan_of(name, 5, **overrides)
    assert plan.indivisible == {where: why}
    assert not plan.splits and not plan.heads
    assert plan.spans[where].line > 0  # check points at the attention in the spec


def test_width_that_does_not_divide_keeps_the_mlp_whole():
    _, plan = plan_of("gpt2_small", 5, n_layer=1)
    assert plan.replicated["transformer.h.0.mlp.c_fc"] == \
        "linear: its 3072 output features do not divide by tensor = 5"
    assert plan.replicated["transformer.h.0.attn.c_attn"] == \
        "sdpa: 12 heads do not divide by tensor = 5"


def test_tensor_1_splits_nothing():
    spec = nnspec.load(ROOT / "specs/gpt2_small.nn", n_layer=1)
    plan = tensor_plan(spec.ir, 1)
    assert plan.splits == {} and plan.replicated == {} and plan.allreduces == ()


SMALL = """
block Mlp(width) {{
  in x
  out x -> up: linear(4 * width) -> act: {act} -> down: linear(width)
}}
model m(width = 16) {{
  input x: float[8, width]
  {body}
}}
"""


def small(body: str, act: str = "gelu", n: int = 2):
    spec = nnspec.loads(SMALL.format(body=body, act=act), name="m.nn")
    return tensor_plan(spec.ir, n)


def test_names_do_not_matter_only_the_dataflow():
    plan = small("h = x -> a: Mlp(width)\n  out h -> b: Mlp(width)")
    assert plan.splits == {"a.up": "column", "a.down": "row", "b.up": "column", "b.down": "row"}


def test_a_split_width_that_reaches_a_norm_stays_whole():
    plan = small("out x -> fc: linear(32) -> norm: layernorm -> proj: linear(16)")
    assert plan.replicated["fc"] == ("linear: not followed by a row-parallel partner (its split "
                                     "output reaches layernorm, which needs the whole width)")
    assert plan.replicated["proj"].startswith("linear: not followed by a row-parallel partner")
    assert plan.replicated["norm"].startswith("layernorm: ")


def test_a_linear_applied_twice_stays_whole():
    plan = small("h = x -> fc: linear(16) -> relu\n  out h -> fc -> out_proj: linear(16)")
    assert plan.replicated["fc"] == \
        "linear: not followed by a row-parallel partner (fc is applied more than once)"


def test_an_elementwise_op_with_an_unsplit_input_breaks_the_pair():
    plan = small("h = x -> fc: linear(16)\n  out h + x -> proj: linear(16)")
    assert plan.replicated["fc"] == ("linear: not followed by a row-parallel partner (add also "
                                     "takes a model input, which is not split)")


def test_transformer_encoder_layer_splits_inside():
    spec = nnspec.loads("model m() {\n  input x: float[8, 32]\n"
                        "  out x -> enc: transformer_encoder_layer(4, dim_feedforward=64)\n}\n",
                        name="m.nn")
    plan = tensor_plan(spec.ir, 2)
    assert plan.splits == {"enc.self_attn": "column", "enc.self_attn.out_proj": "row",
                           "enc.linear1": "column", "enc.linear2": "row"}
    assert plan.heads == {"enc.self_attn": 2}
    assert plan.sections == {"enc.self_attn": (32, 32, 32)}
    assert len(plan.allreduces) == 4
