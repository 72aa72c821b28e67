"""LLM building blocks: rotary, and sdpa's grouped-query, sliding-window and biased attention,
against transformers' own code (Llama's apply_rotary_pos_emb, repeat_kv, LlamaRMSNorm, T5's
relative position bias) and a float64 reference; plus their shape rules and diagnostics."""
from __future__ import annotations

import math

import pytest
import torch
import transformers
from transformers.models.llama import modeling_llama

import nnspec
from nnspec.interp import KINDS
from nnspec.layers import REGISTRY, ShapeError, T

from .layercheck import check_layer, namespace

CASES = [
    ("rotary", {"head_dim": 4}, [T((5, 8))]),
    ("rotary", {"head_dim": 8, "theta": 500000.0}, [T((3, 8))]),
    ("rotary", {"head_dim": 2, "scaling": "linear", "factor": 2.0}, [T((5, 6))]),
    ("rotary", {"head_dim": 4, "scaling": "dynamic", "factor": 2.0,
                "original_max_position_embeddings": 3}, [T((5, 8))]),
    ("rotary", {"head_dim": 8, "scaling": "llama3", "factor": 8.0,
                "original_max_position_embeddings": 4}, [T((5, 16))]),
    ("sdpa", {"heads": 4, "kv_heads": 2}, [T((5, 8)), T((7, 4)), T((7, 4))]),
    ("sdpa", {"heads": 4, "kv_heads": 1, "causal": True}, [T((5, 8)), T((5, 2)), T((5, 2))]),
    ("sdpa", {"heads": 2, "window": 2, "causal": True}, [T((5, 8)), T((5, 8)), T((5, 8))]),
    ("sdpa", {"heads": 2, "window": 3}, [T((5, 8)), T((5, 8)), T((5, 8)), T((5,), "long")]),
    ("sdpa", {"heads": 2}, [T((5, 8)), T((6, 8)), T((6, 8)), T((2, 5, 6))]),
    ("sdpa", {"heads": 2, "kv_heads": 1, "causal": True},
     [T((5, 8)), T((5, 4)), T((5, 4)), T((5,), "long"), T((1, 5, 5))]),
    ("kv_attention", {"heads": 4, "kv_heads": 2, "causal": True},
     [T((5, 8)), T((5, 4)), T((5, 4))]),
    ("kv_attention", {"heads": 2, "window": 2, "scale": 0.5},
     [T((5, 8)), T((5, 8)), T((5, 8)), T((5,), "long"), T((2, 5, 5))]),
]


@pytest.mark.parametrize("kind,args,ins", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_layer_rules_match_torch(kind, args, ins):
    check_layer(kind, args, ins)


def test_rotary_is_documented():
    cls = REGISTRY["rotary"]
    assert cls.__doc__ and len(cls.__doc__.strip().splitlines()) == 1
    assert all(f.description for f in cls.model_fields.values())
    assert REGISTRY["sdpa"].model_fields["kv_heads"].description
    assert REGISTRY["sdpa"].model_fields["window"].description


# ---- rotary -----------------------------------------------------------------------------------
def _transformers_rope(x, head_dim, **rope):
    config = transformers.LlamaConfig(hidden_size=x.shape[-1],
                                      num_attention_heads=x.shape[-1] // head_dim,
                                      head_dim=head_dim, max_position_embeddings=16,
                                      rope_parameters={"rope_type": "default",
                                                       "rope_theta": 10000.0, **rope})
    cos, sin = modeling_llama.LlamaRotaryEmbedding(config)(x, torch.arange(x.shape[1])[None])
    heads = x.unflatten(-1, (-1, head_dim)).transpose(1, 2)
    out, _ = modeling_llama.apply_rotary_pos_emb(heads, heads, cos, sin)
    return out.transpose(1, 2).flatten(2)


ROPES = [({}, {}), ({"rope_theta": 500000.0}, {"theta": 500000.0}),
         ({"rope_type": "linear", "factor": 3.0}, {"scaling": "linear", "factor": 3.0}),
         ({"rope_type": "dynamic", "factor": 2.0},
          {"scaling": "dynamic", "factor": 2.0, "original_max_position_embeddings": 16}),
         ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8},
          {"scaling": "llama3", "factor": 8.0, "original_max_position_embeddings": 8})]


@pytest.mark.parametrize("rope,args", ROPES, ids=lambda r: str(r.get("rope_type", r)))
@pytest.mark.parametrize("length", [7, 40])
def test_rotary_equals_transformers_and_interpreter(rope, args, length):
    x = torch.randn(2, length, 32, generator=torch.Generator().manual_seed(length))
    layer = REGISTRY["rotary"].model_validate({"head_dim": 8, **args})
    module = eval(layer.init_source([T((length, 32))]), namespace())
    want = _transformers_rope(x, 8, **rope)
    torch.testing.assert_close(module(x), want, rtol=1e-5, atol=1e-5)
    # the interpreter's float64 definition and the helper agree to float64 precision
    x64 = x.double()
    torch.testing.assert_close(module(x64), KINDS["rotary"](layer, {}, [x64], {}, None),
                               rtol=1e-12, atol=1e-12)


def test_rotary_offset_continues_the_positions():
    """forward(x, offset) rotates as the tail of a longer sequence would be rotated."""
    layer = REGISTRY["rotary"].model_validate({"head_dim": 4})
    module = eval(layer.init_source([T((6, 8))]), namespace())
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(module(x[:, 4:], offset=4), module(x)[:, 4:])


def test_rotary_has_no_state():
    module = eval(REGISTRY["rotary"](head_dim=4).init_source([T((6, 8))]), namespace())
    assert module.state_dict() == {}


@pytest.mark.parametrize("args,words", [
    ({"head_dim": 3}, "even"),
    ({"head_dim": 4, "scaling": "llama3", "low_freq_factor": 4.0}, "high_freq_factor"),
    ({"head_dim": 4, "scaling": "yarn"}, "scaling"),
    ({"head_dim": 4, "theta": 1.0}, "theta")])
def test_rotary_bad_arguments(args, words):
    with pytest.raises(ValueError, match=words):
        REGISTRY["rotary"].model_validate(args)


def test_rotary_shape_errors():
    layer = REGISTRY["rotary"](head_dim=4)
    with pytest.raises(ShapeError, match="multiple of head_dim=4"):
        layer.infer([T((5, 6))])
    with pytest.raises(ShapeError, match=r"\[B, T, D\]"):
        layer.infer([T((8,))])


# ---- RMSNorm ----------------------------------------------------------------------------------
def test_rmsnorm_equals_llama_rmsnorm_in_float32():
    ref = modeling_llama.LlamaRMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
    module = eval(REGISTRY["rmsnorm"](eps=1e-6).init_source([T((5, 16))]), namespace())
    module.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 5, 16) * 4
    assert torch.equal(module(x), ref(x))


# ---- grouped-query, sliding-window and biased attention -----------------------------------------
def _sdpa(args, xs, kw=None):
    layer = REGISTRY["sdpa"].model_validate(args)
    kw = kw or {}
    names = [f"a{i}" for i in range(len(xs))]
    call = names + [f"{k}=b{i}" for i, k in enumerate(kw)]
    types = [T(tuple(x.shape[1:]), "long" if x.dtype == torch.long else "float")
             for x in [*xs, *kw.values()]]
    layer.infer(types)
    src = layer.functional_source(call, types)
    env = {**namespace(), **dict(zip(names, xs)),
           **{f"b{i}": v for i, v in enumerate(kw.values())}}
    got = eval(src, env)
    interp = KINDS["sdpa"](layer, {}, list(xs), dict(kw), None)
    torch.testing.assert_close(got, interp, rtol=1e-10, atol=1e-10)
    return got


def test_grouped_query_attention_equals_llama_eager_attention():
    gen = torch.Generator().manual_seed(0)
    b, t, heads, kv, d = 2, 6, 6, 2, 4
    q = torch.randn(b, t, heads * d, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(b, t, kv * d, generator=gen, dtype=torch.float64) for _ in range(2))
    got = _sdpa({"heads": heads, "kv_heads": kv, "causal": True}, [q, k, v])

    class Module(torch.nn.Module):
        num_key_value_groups = heads // kv
        training = False

    causal = torch.zeros(t, t, dtype=torch.float64).masked_fill(
        torch.ones(t, t, dtype=torch.bool).triu(1), -math.inf)
    split = lambda x: x.unflatten(-1, (-1, d)).transpose(1, 2)  # noqa: E731
    want, _ = modeling_llama.eager_attention_forward(Module(), split(q), split(k), split(v),
                                                     causal[None, None], scaling=d ** -0.5)
    # Llama's eager attention takes its softmax in float32
    torch.testing.assert_close(got, want.flatten(2), rtol=1e-5, atol=1e-6)


def test_sliding_window_sees_only_recent_keys():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 7, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    got = _sdpa({"heads": 1, "causal": True, "window": 3}, [q, k, v])
    scores = q @ k.transpose(1, 2) / 2.0
    i, j = torch.arange(7)[:, None], torch.arange(7)[None, :]
    hidden = (j > i) | (i - j >= 3)      # Mistral: q_idx - kv_idx < sliding_window
    want = scores.masked_fill(hidden, -math.inf).softmax(-1) @ v
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # changing a key more than `window` back from the last query leaves its output alone
    k2 = k.clone()
    k2[0, 2] += 5
    again = _sdpa({"heads": 1, "causal": True, "window": 3}, [q, k2, v])
    assert torch.equal(again[0, 5:], got[0, 5:]) and not torch.equal(again[0, 2], got[0, 2])


def test_additive_bias_equals_t5_relative_attention():
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.T5Config(d_model=16, d_kv=4, num_heads=4,
                                   relative_attention_num_buckets=8, dropout_rate=0.0)
    attn = T5Attention(config, has_relative_attention_bias=True).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        want = attn(x)[0]
        bias = attn.compute_bias(5, 5).expand(2, -1, -1, -1)
        q, k, v = attn.q(x), attn.k(x), attn.v(x)
        # T5 does not scale its scores
        got = attn.o(_sdpa({"heads": 4, "scale": 1.0}, [q, k, v], {"bias": bias}))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bias_binds_by_rank_positionally():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(2, 2, 4, 4, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    a = _sdpa({"heads": 2}, [q, k, v, mask, bias])
    b = _sdpa({"heads": 2}, [q, k, v], {"bias": bias, "mask": mask})
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("args,ins,words", [
    ({"heads": 4, "kv_heads": 3}, [T((5, 8)), T((5, 6)), T((5, 6))], "does not divide heads=4"),
    ({"heads": 4, "kv_heads": 2}, [T((5, 8)), T((5, 8)), T((5, 8))], "must be 4 wide"),
    ({"heads": 2}, [T((5, 8)), T((5, 8)), T((5, 8)), T((3, 5, 5))], "bias must be float"),
    ({"heads": 2}, [T((5, 8)), T((5, 8)), T((5, 8)), T((2, 5, 4))], "[B, 2 or 1, 5, 5]"),
    ({"heads": 2}, [T((5, 8)), T((5, 8)), T((5, 8)), T((5, 5))], "a mask [B, S] and a bias"),
])
def test_sdpa_shape_errors(args, ins, words):
    with pytest.raises(ShapeError) as err:
        REGISTRY["sdpa"].model_validate(args).infer(ins)
    assert words in err.value.message


def test_a_gqa_spec_without_kv_heads_is_told_to_pass_it():
    text = """
model m {
  input x: float[6, 16]
  q = x -> q_proj: linear(16)
  k = x -> k_proj: linear(8)
  v = x -> v_proj: linear(8)
  out sdpa(q, k, v, heads=4, causal=true)
}"""
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="gqa.nn")
    shown = str(err.value)
    assert "gqa.nn:7:7" in shown
    assert "help: for grouped-query attention give kv_heads=2" in shown


# ---- kv_attention: sdpa as a module with a k/v cache ---------------------------------------------
def _kv_module(**args):
    layer = REGISTRY["kv_attention"].model_validate(args)
    return layer, eval(layer.init_source([T((6, 8)), T((6, 4)), T((6, 4))]), namespace())


@pytest.mark.parametrize("args", [{"heads": 4, "kv_heads": 2, "causal": True},
                                  {"heads": 4, "kv_heads": 1, "causal": True, "window": 3},
                                  {"heads": 2, "causal": True, "scale": 0.5}])
def test_kv_attention_cached_steps_equal_one_call(args):
    _, module = _kv_module(**args)
    gen = torch.Generator().manual_seed(3)
    width = 8 // args["heads"] * args.get("kv_heads", args["heads"])
    q = torch.randn(2, 7, 8, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(2, 7, width, generator=gen, dtype=torch.float64) for _ in range(2))
    full = module(q, k, v)
    module.start_cache()
    steps = [module(q[:, :3], k[:, :3], v[:, :3])]
    steps += [module(q[:, i:i + 1], k[:, i:i + 1], v[:, i:i + 1]) for i in range(3, 7)]
    module.stop_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-12, atol=1e-12)


def test_kv_attention_refuses_a_mask_while_caching():
    _, module = _kv_module(heads=2)
    module.start_cache()
    x = torch.randn(1, 3, 8)
    with pytest.raises(RuntimeError, match="cannot be cached"):
        module(x, x, x, mask=torch.ones(1, 3))


def test_kv_attention_without_cache_is_sdpa():
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 5, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    bias = torch.randn(2, 2, 5, 5, generator=gen, dtype=torch.float64)
    args = {"heads": 2, "causal": True, "window": 2}
    _, module = _kv_module(**args)
    torch.testing.assert_close(module(q, k, v, mask=mask, bias=bias),
                               _sdpa(args, [q, k, v], {"mask": mask, "bias": bias}),
                               rtol=1e-12, atol=1e-12)


def test_head_pruning_refuses_grouped_query_attention():
    """compress' heads() cuts q, k and v alike; with kv_heads= that would break the grouping."""
    text = """
model m {
  input x: float[5, 16]
  q = x -> q_proj: linear(16)
  k = x -> k_proj: linear(8)
  v = x -> v_proj: linear(8)
  out sdpa(q, k, v, heads=4, kv_heads=2) -> o_proj: linear(16)
}

compress {
  prune = heads(0.5)
}
"""
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="gqa_heads.nn")
    assert "E0724" in str(err.value) and "kv_heads=" in str(err.value)


@pytest.mark.parametrize("kind", ["sdpa", "kv_attention"])
def test_a_keyword_tensor_of_the_other_role_is_a_located_error(kind):
    text = f"""
model m {{
  input x: float[4, 8]
  input pb: float[2, 4, 4]
  out {kind}(x, x, x, mask=pb, heads=2)
}}"""
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="role.nn")
    assert "role.nn:5:" in str(err.value) and "mask= is given" in str(err.value)
