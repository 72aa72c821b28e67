"""Sequence layer kinds: embeddings, position encodings, parameters, recurrent nets, attention and
transformer layers. Each kind goes through the shared contract check where it applies, and its
runtime helper is checked numerically against the torch.nn module it stands for."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nnspec.layers import REGISTRY, ShapeError, T
from nnspec.runtime import HELPERS, helper_source

from .layercheck import BATCH, check_layer, make_input, namespace

L = "long"
B = "bool"

CASES = [
    ("embedding", {"num_embeddings": 10, "embedding_dim": 6}, [T((5,), L)]),
    ("embedding", {"num_embeddings": 10, "embedding_dim": 6, "padding_idx": 0}, [T((2, 5), L)]),
    ("embedding", {"num_embeddings": 10, "embedding_dim": 6}, [T((), L)]),
    ("position_embedding", {"num_positions": 10, "embedding_dim": 6}, [T((5,), L)]),
    ("position_embedding", {"num_positions": 5, "embedding_dim": 6}, [T((5, 3))]),
    ("position_embedding", {"num_positions": 10, "embedding_dim": 6, "offset": 2}, [T((5, 3))]),
    ("sinusoidal_position_encoding", {}, [T((5, 8))]),
    ("sinusoidal_position_encoding", {"d_model": 7, "max_len": 5}, [T((5, 7))]),
    ("zeros_like", {}, [T((5,), L)]),
    ("zeros_like", {"dtype": "float"}, [T((5,), L)]),
    ("ones_like", {}, [T((4, 3))]),
    ("ones_like", {"dtype": "long"}, [T((4, 3))]),
    ("rnn", {"hidden_size": 4}, [T((5, 3))]),
    ("rnn", {"hidden_size": 4, "nonlinearity": "relu", "bias": False}, [T((5, 3))]),
    ("rnn", {"hidden_size": 4, "num_layers": 2, "bidirectional": True, "last": True}, [T((5, 3))]),
    ("lstm", {"hidden_size": 4}, [T((5, 3))]),
    ("lstm", {"hidden_size": 4, "num_layers": 2, "dropout": 0.1}, [T((5, 3))]),
    ("lstm", {"hidden_size": 4, "num_layers": 2, "bidirectional": True, "bias": False},
     [T((5, 3))]),
    ("lstm", {"hidden_size": 4, "bidirectional": True, "last": True}, [T((6, 3))]),
    ("gru", {"hidden_size": 4}, [T((5, 3))]),
    ("gru", {"hidden_size": 4, "num_layers": 2, "bidirectional": True}, [T((5, 3))]),
    ("gru", {"hidden_size": 4, "num_layers": 3, "bias": False, "last": True}, [T((5, 3))]),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8))]),
    ("multihead_attention", {"num_heads": 4, "causal": True}, [T((5, 8))]),
    ("multihead_attention", {"num_heads": 2, "bias": False, "dropout": 0.1}, [T((5, 8))]),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((7, 8))]),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((7, 8)), T((7, 8))]),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((7, 6)), T((7, 3))]),
    ("multihead_attention", {"num_heads": 2, "causal": True},
     [T((5, 8)), T((5, 8)), T((5, 8)), T((5,), B)]),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((7, 8)), T((7, 8)), T((7,), L)]),
    ("sdpa", {"heads": 2}, [T((5, 8)), T((7, 8)), T((7, 8))]),
    ("sdpa", {"heads": 4, "causal": True}, [T((5, 8)), T((5, 8)), T((5, 8))]),
    ("sdpa", {"heads": 2, "scale": 0.5}, [T((5, 8)), T((5, 8)), T((5, 8)), T((5,), L)]),
    ("sdpa", {"heads": 2, "causal": True}, [T((5, 8)), T((5, 8)), T((5, 8)), T((5,), L)]),
    ("transformer_encoder_layer", {"nhead": 2, "dim_feedforward": 16}, [T((5, 8))]),
    ("transformer_encoder_layer", {"nhead": 2, "dim_feedforward": 16, "norm_first": True,
                                   "activation": "gelu", "bias": False, "causal": True},
     [T((5, 8))]),
    ("transformer_encoder_layer", {"nhead": 2, "dim_feedforward": 16, "layer_norm_eps": 1e-6},
     [T((5, 8)), T((5,), B)]),
    ("transformer_decoder_layer", {"nhead": 2, "dim_feedforward": 16}, [T((5, 8)), T((7, 8))]),
    ("transformer_decoder_layer", {"nhead": 2, "dim_feedforward": 16, "causal": True,
                                   "norm_first": True, "activation": "gelu"},
     [T((5, 8)), T((7, 8)), T((5,), B), T((7,), B)]),
    ("transformer_decoder_layer",
     {"nhead": 4, "dim_feedforward": 12, "bias": False, "dropout": 0.0},
     [T((5, 8)), T((5, 8))]),
]


def _id(case):
    kind, args, ins = case
    return kind + "-" + "-".join(f"{k}={v}" for k, v in args.items()) + f"-{len(ins)}in"


@pytest.mark.parametrize("kind,args,ins", CASES, ids=[_id(c) for c in CASES])
def test_layer_rules_match_torch(kind, args, ins):
    check_layer(kind, args, ins)


KINDS = ["embedding", "position_embedding", "sinusoidal_position_encoding", "parameter",
         "zeros_like", "ones_like", "rnn", "lstm", "gru", "multihead_attention", "sdpa",
         "transformer_encoder_layer", "transformer_decoder_layer"]


def test_every_sequence_kind_is_covered():
    assert set(KINDS) <= set(REGISTRY)
    assert set(KINDS) - {c[0] for c in CASES} == {"parameter"}  # parameter: its own tests below


@pytest.mark.parametrize("kind", KINDS)
def test_kinds_are_documented(kind):
    cls = REGISTRY[kind]
    assert cls.__doc__ and len(cls.__doc__.strip().splitlines()) == 1
    assert cls.category and (cls.torch_name or kind == "sinusoidal_position_encoding")
    for name, field in cls.model_fields.items():
        assert field.description, (kind, name)


HELPER_CASES = [c for c in CASES if REGISTRY[c[0]].prelude]


@pytest.mark.parametrize("kind,args,ins", HELPER_CASES, ids=[_id(c) for c in HELPER_CASES])
def test_helpers_run_from_their_source_alone(kind, args, ins):
    """model.py holds a helper's source verbatim, next to only torch, nn, F and math."""
    layer = REGISTRY[kind].model_validate(args)
    assert set(layer.prelude) <= set(HELPERS)
    ns = {"torch": torch, "nn": nn, "F": F, "math": math}
    for name in layer.prelude:
        text = helper_source(name)
        assert "nnspec" not in text and "import" not in text
        exec(text, ns)
    module = eval(layer.init_source(ins), ns).eval()
    gen = torch.Generator().manual_seed(0)
    _, want = check_layer(kind, args, ins)
    with torch.no_grad():
        got = module(*[make_input(t, gen) for t in ins])
    assert got.shape == want[0].shape


# ---- calls with optional keyword inputs ----------------------------------------------------------
# The emitter writes a tensor given by keyword in the spec as the call arg `name=expr`, after the
# positional ones; `ins` lists the types in the same order.
def check_call(kind, args, ins, call_args, inputs=None):
    """Like check_layer, but runs the module through `call_source` with `call_args` (the
    positional ones `a0`, `a1`..., keyword ones `name=aN`)."""
    layer = REGISTRY[kind].model_validate(args)
    out = layer.infer(ins)
    gen = torch.Generator().manual_seed(0)
    xs = inputs if inputs is not None else [make_input(t, gen) for t in ins]
    module = eval(layer.init_source(ins), namespace()).eval().to(xs[0].dtype)
    src = layer.call_source("m", call_args, ins)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        got = eval(src, {"m": module, **{f"a{i}": x for i, x in enumerate(xs)}})
    assert tuple(got.shape) == (len(xs[0]), *out.shape)
    seen = layer.flops(ins, (out,)) - layer.flops_unseen_on_cpu(ins, (out,))
    assert seen * len(xs[0]) == counter.get_total_flops()
    return layer, module, src, got


def _causal_mask(n: int) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.float64)


def _mha_reference(module: nn.MultiheadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(module.embed_dim, module.num_heads, batch_first=True,
                                bias=module.in_proj_bias is not None, kdim=module.kdim,
                                vdim=module.vdim).double().eval()
    ref.load_state_dict(module.state_dict(), strict=True)
    return ref


def test_mha_self_attention_with_padding_mask_by_keyword():
    q = torch.randn(2, 5, 8, dtype=torch.float64)
    pad = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])
    ins = [T((5, 8)), T((5,), L)]
    layer, module, src, got = check_call("multihead_attention", {"num_heads": 2}, ins,
                                         ["a0", "key_padding_mask=a1"], [q, pad])
    assert src == "m(a0, key_padding_mask=a1)"
    # given positionally, the [S] tensor is read as the padding mask by its type
    assert layer.call_source("m", ["a0", "a1"], ins) == src
    want = _mha_reference(module)(q, q, q, key_padding_mask=pad.bool(), need_weights=False)[0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch(causal):
    q = torch.randn(2, 5, 8, dtype=torch.float64)
    k = torch.randn(2, 5, 8, dtype=torch.float64)
    pad = torch.tensor([[False, False, True, False, True], [False] * 5])
    layer = REGISTRY["multihead_attention"].model_validate({"num_heads": 2, "causal": causal})
    ins = [T((5, 8)), T((5, 8)), T((5,), B)]
    module = eval(layer.init_source(ins), namespace()).double().eval()
    ref = _mha_reference(module)
    mask = _causal_mask(5) if causal else None
    float_pad = pad.double().masked_fill(pad, -math.inf)
    with torch.no_grad():
        cases = [((q,), {}, (q, q, q), {}),
                 ((q, k), {}, (q, k, k), {}),
                 ((q, k, k), {"key_padding_mask": pad}, (q, k, k), {"key_padding_mask": float_pad}),
                 ((q,), {"key_padding_mask": pad}, (q, q, q), {"key_padding_mask": float_pad})]
        for args, kw, ref_args, ref_kw in cases:
            want = ref(*ref_args, attn_mask=mask, need_weights=False, **ref_kw)[0]
            torch.testing.assert_close(module(*args, **kw), want)


def test_mha_kdim_vdim_matches_torch():
    layer = REGISTRY["multihead_attention"].model_validate({"num_heads": 2})
    ins = [T((5, 8)), T((7, 6)), T((7, 3))]
    module = eval(layer.init_source(ins), namespace()).double().eval()
    assert not module._qkv_same_embed_dim
    q, k, v = (torch.randn(2, *t.shape, dtype=torch.float64) for t in ins)
    with torch.no_grad():
        want = _mha_reference(module)(q, k, v, need_weights=False)[0]
        torch.testing.assert_close(module(q, k, v), want)


def test_mha_keyword_tensors_must_fit_their_types():
    layer = REGISTRY["multihead_attention"].model_validate({"num_heads": 2})
    ins = [T((5, 8)), T((5, 8))]
    assert layer.call_source("m", ["q", "k"], ins) == "m(q, key=k)"
    assert layer.call_source("m", ["q", "key=k"], ins) == "m(q, key=k)"
    # value without key: key defaults to the query, which has the value's type here
    assert layer.call_source("m", ["q", "value=v"], ins) == "m(q, value=v)"
    with pytest.raises(ShapeError):  # ... but not here: infer read it as key and value [7, 8]
        layer.call_source("m", ["q", "value=v"], [T((5, 8)), T((7, 8))])
    with pytest.raises(ShapeError):  # a [S, E] tensor is no padding mask
        layer.call_source("m", ["q", "key_padding_mask=p"], ins)
    with pytest.raises(ShapeError):
        layer.call_source("m", ["q", "k", "key=k2"], ins + [T((5, 8))])
    five = ins + [T((5, 8)), T((5,), B)]
    assert layer.call_source("m", ["q", "k", "v", "p"], five) == \
        "m(q, key=k, value=v, key_padding_mask=p)"
    assert layer.call_source("m", ["q", "value=v", "key=k", "key_padding_mask=p"], five) == \
        "m(q, key=k, value=v, key_padding_mask=p)"


def test_encoder_mask_by_keyword():
    ins = [T((5, 8)), T((5,), B)]
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    x = torch.randn(2, 5, 8)
    layer, _, src, _ = check_call("transformer_encoder_layer", {"nhead": 2, "dim_feedforward": 16},
                                  ins, ["a0", "src_key_padding_mask=a1"], [x, pad])
    assert src == "m(a0, src_key_padding_mask=a1)"
    assert layer.call_source("m", ["a0", "a1"], ins) == src


@pytest.mark.parametrize("which", ["tgt_key_padding_mask", "memory_key_padding_mask"])
def test_decoder_single_mask(which):
    t, s = (5, 7)
    length = t if which == "tgt_key_padding_mask" else s
    ins = [T((t, 8)), T((s, 8)), T((length,), B)]
    layer, module, src, _ = check_call("transformer_decoder_layer",
                                       {"nhead": 2, "dim_feedforward": 16}, ins,
                                       ["a0", "a1", f"{which}=a2"])
    assert src == f"m(a0, a1, {which}=a2)"
    assert layer.call_source("m", ["a0", "a1", "a2"], ins) == src  # positional: bound by length
    other = "tgt_key_padding_mask" if which != "tgt_key_padding_mask" else "memory_key_padding_mask"
    with pytest.raises(ShapeError):
        layer.call_source("m", ["a0", "a1", f"{other}=a2"], ins)


def test_decoder_both_masks_by_keyword_in_any_order():
    ins = [T((5, 8)), T((7, 8)), T((7,), B), T((5,), B)]
    layer, _, src, _ = check_call("transformer_decoder_layer", {"nhead": 2, "dim_feedforward": 16},
                                  ins, ["a0", "a1", "memory_key_padding_mask=a2",
                                        "tgt_key_padding_mask=a3"])
    assert src == "m(a0, a1, memory_key_padding_mask=a2, tgt_key_padding_mask=a3)"


def test_transformer_encoder_matches_torch():
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    for args in [{"nhead": 2, "dim_feedforward": 16},
                 {"nhead": 2, "dim_feedforward": 16, "norm_first": True, "activation": "gelu",
                  "layer_norm_eps": 1e-6, "bias": False}]:
        for causal in (False, True):
            layer = REGISTRY["transformer_encoder_layer"].model_validate({**args, "causal": causal})
            module = eval(layer.init_source([T((5, 8))]), namespace()).double().eval()
            kw = {k: v for k, v in args.items() if k != "nhead"}
            ref = nn.TransformerEncoderLayer(8, 2, batch_first=True, **kw).double().eval()
            ref.load_state_dict(module.state_dict(), strict=True)
            mask = _causal_mask(5) if causal else None
            # (with grad enabled, torch's reference takes its plain path, as the helper always does)
            got = module(x, src_key_padding_mask=pad)
            float_pad = pad.double().masked_fill(pad, -math.inf)
            want = ref(x, src_mask=mask, src_key_padding_mask=float_pad, is_causal=causal)
            torch.testing.assert_close(got, want)


def test_transformer_decoder_matches_torch():
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    mem = torch.randn(2, 7, 8, dtype=torch.float64)
    mpad = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])
    for norm_first in (False, True):
        for causal in (False, True):
            layer = REGISTRY["transformer_decoder_layer"].model_validate(
                {"nhead": 2, "dim_feedforward": 16, "norm_first": norm_first, "causal": causal})
            module = eval(layer.init_source([T((5, 8)), T((7, 8))]), namespace()).double().eval()
            ref = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True,
                                             norm_first=norm_first).double().eval()
            ref.load_state_dict(module.state_dict(), strict=True)
            mask = _causal_mask(5) if causal else None
            got = module(x, mem, memory_key_padding_mask=mpad)
            want = ref(x, mem, tgt_mask=mask, tgt_is_causal=causal,
                       memory_key_padding_mask=mpad.double().masked_fill(mpad, -math.inf))
            torch.testing.assert_close(got, want)


# ---- recurrent nets ------------------------------------------------------------------------------
RNN_ARGS = [{}, {"num_layers": 2}, {"bidirectional": True}, {"num_layers": 2, "bidirectional": True,
                                                              "bias": False}]


@pytest.mark.parametrize("kind,torch_cls", [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
@pytest.mark.parametrize("args", RNN_ARGS, ids=lambda a: "-".join(a) or "default")
def test_recurrent_matches_torch(kind, torch_cls, args):
    ref = torch_cls(3, 4, batch_first=True, **args).eval()
    x = torch.randn(2, 6, 3)
    for last in (False, True):
        layer = REGISTRY[kind].model_validate({"hidden_size": 4, **args, "last": last})
        module = eval(layer.init_source([T((6, 3))]), namespace()).eval()
        module.load_state_dict(ref.state_dict(), strict=True)
        assert set(module.state_dict()) == set(ref.state_dict())
        with torch.no_grad():
            want = ref(x)[0]
            torch.testing.assert_close(module(x), want[:, -1] if last else want)


def test_rnn_nonlinearity():
    ref = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    layer = REGISTRY["rnn"].model_validate({"hidden_size": 4, "nonlinearity": "relu"})
    module = eval(layer.init_source([T((6, 3))]), namespace())
    module.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(module(x), ref(x)[0])


def test_lstm_flops_formula_where_flop_counter_sees_it():
    """flop_counter sees 0 for LSTM in float32 on CPU (a oneDNN kernel); in float64 torch
    decomposes it into matmuls, and nnspec's count equals flop_counter's there."""
    args = {"hidden_size": 4, "num_layers": 2, "bidirectional": True}
    layer = REGISTRY["lstm"].model_validate(args)
    ins = [T((6, 3))]
    module = eval(layer.init_source(ins), namespace()).double()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(2, 6, 3, dtype=torch.float64))
    gru_like = REGISTRY["gru"].model_validate(args)
    assert counter.get_total_flops() == 2 * gru_like.flops(ins, ()) * 4 // 3
    assert counter.get_total_flops() == 2 * layer.flops(ins, ())
    assert layer.flops_unseen_on_cpu(ins, ()) == layer.flops(ins, ())


def test_sdpa_flops_use_flop_counters_formula():
    from torch.utils.flop_counter import sdpa_flop_count

    layer = REGISTRY["sdpa"].model_validate({"heads": 4})
    ins = [T((10, 32)), T((12, 32)), T((12, 16))]
    # flop_counter's formula takes (B, H, T, d) shapes
    want = sdpa_flop_count((2, 4, 10, 8), (2, 4, 12, 8), (2, 4, 12, 4))
    assert 2 * layer.flops(ins, ()) == want


# ---- sdpa ----------------------------------------------------------------------------------------
def _sdpa_reference(q, k, v, heads, mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v in float64, heads split and merged like BERT."""
    b, t, d = q.shape
    s = k.shape[1]
    split = lambda a: a.double().view(b, -1, heads, d // heads).transpose(1, 2)  # noqa: E731
    qh, kh, vh = split(q), split(k), split(v)
    scores = qh @ kh.transpose(-1, -2) * (scale or 1 / math.sqrt(d // heads))
    if mask is not None:
        scores = scores + (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    if causal:
        scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool).triu(1), -math.inf)
    return (scores.softmax(-1) @ vh).transpose(1, 2).reshape(b, t, d)


def _sdpa(args, xs, self_module=None):
    ins = [T(tuple(x.shape[1:]), "long" if x.dtype == torch.long else "float") for x in xs]
    layer = REGISTRY["sdpa"].model_validate(args)
    layer.infer(ins)
    names = [f"a{i}" for i in range(len(xs))]
    src = layer.functional_source(names, ins)
    env = {**namespace(), **dict(zip(names, xs))}
    if self_module is not None:
        env["self"] = self_module
    return eval(src, env)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_float64_reference(causal, masked):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 6, 12, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    xs = [q, k, v] + ([mask] if masked else [])
    got = _sdpa({"heads": 3, "causal": causal}, xs)
    want = _sdpa_reference(q, k, v, 3, mask if masked else None, causal)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # float32 inputs agree to float32 precision
    xs32 = [x.float() if x.is_floating_point() else x for x in xs]
    got32 = _sdpa({"heads": 3, "causal": causal}, xs32)
    torch.testing.assert_close(got32, want.float(), rtol=1e-5, atol=1e-5)


def test_sdpa_cross_attention_and_scale():
    q = torch.randn(2, 4, 8, dtype=torch.float64)
    k, v = torch.randn(2, 7, 8, dtype=torch.float64), torch.randn(2, 7, 8, dtype=torch.float64)
    mask = torch.tensor([[1] * 5 + [0] * 2, [1] * 7])
    got = _sdpa({"heads": 2, "scale": 0.3}, [q, k, v, mask])
    torch.testing.assert_close(got, _sdpa_reference(q, k, v, 2, mask, scale=0.3))


def test_sdpa_matches_bert_self_attention():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertSelfAttention

    config = transformers.BertConfig(hidden_size=12, num_attention_heads=3,
                                     attn_implementation="eager")
    bert = BertSelfAttention(config).double().eval()
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    extended = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    with torch.no_grad():
        want = bert(x, attention_mask=extended)[0]
        got = _sdpa({"heads": 3}, [bert.query(x), bert.key(x), bert.value(x), mask])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_sdpa_dropout_follows_the_module_mode():
    q = torch.randn(2, 5, 8)
    holder = nn.Module().eval()
    src = REGISTRY["sdpa"].model_validate({"heads": 2, "dropout": 0.5}).functional_source(
        ["q", "q", "q"], [T((5, 8))] * 3)
    assert "self.training" in src
    torch.testing.assert_close(_sdpa({"heads": 2, "dropout": 0.5}, [q, q, q], holder),
                               _sdpa({"heads": 2}, [q, q, q]))
    holder.train()
    torch.manual_seed(0)
    assert not torch.allclose(_sdpa({"heads": 2, "dropout": 0.5}, [q, q, q], holder),
                              _sdpa({"heads": 2}, [q, q, q]))


# ---- causality -----------------------------------------------------------------------------------
def _causal_runners():
    """(name, f(x) -> output) pairs that must not let position j see positions after j."""
    # with padding, including a first key that is padding (its row has no key left to attend)
    keep = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 0]])
    runs = [("sdpa", lambda x: _sdpa({"heads": 2, "causal": True}, [x, x * 2, x - 1])),
            ("sdpa+mask", lambda x: _sdpa({"heads": 2, "causal": True}, [x, x, x, keep]))]
    for kind, args, extra in [
            ("multihead_attention", {"num_heads": 2, "causal": True}, []),
            ("transformer_encoder_layer", {"nhead": 2, "dim_feedforward": 16, "causal": True}, []),
            ("transformer_decoder_layer", {"nhead": 2, "dim_feedforward": 16, "causal": True},
             [torch.randn(2, 4, 8)])]:
        layer = REGISTRY[kind].model_validate(args)
        ins = [T((6, 8))] + [T(tuple(e.shape[1:])) for e in extra]
        module = eval(layer.init_source(ins), namespace()).eval()
        runs.append((kind, lambda x, m=module, e=extra: m(x, *e)))
    mha = eval(REGISTRY["multihead_attention"].model_validate(
        {"num_heads": 2, "causal": True}).init_source([T((6, 8)), T((6,), B)]), namespace()).eval()
    pad = torch.tensor([[False, False, True, False, True, False], [False, True] * 3])
    runs.append(("mha+mask", lambda x: mha(x, key_padding_mask=pad)))
    return runs


@pytest.mark.parametrize("name,run", _causal_runners(), ids=[r[0] for r in _causal_runners()])
def test_causal_outputs_never_see_later_tokens(name, run):
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        base = run(x)
        for j in range(1, 6):
            y = x.clone()
            y[:, j:] = torch.randn(2, 6 - j, 8)
            out = run(y)
            torch.testing.assert_close(out[:, :j], base[:, :j])
            assert not torch.allclose(out[:, j:], base[:, j:])


def test_non_causal_attention_does_see_later_tokens():
    x = torch.randn(2, 6, 8)
    y = x.clone()
    y[:, -1] += 1
    a, b = (_sdpa({"heads": 2}, [t, t, t]) for t in (x, y))
    assert not torch.allclose(a[:, 0], b[:, 0])


# ---- embeddings and parameters -------------------------------------------------------------------
def test_position_embedding_loads_an_embedding_state_dict():
    layer = REGISTRY["position_embedding"].model_validate({"num_positions": 16, "embedding_dim": 6})
    module = eval(layer.init_source([T((5,), L)]), namespace())
    table = nn.Embedding(16, 6)
    module.load_state_dict(table.state_dict(), strict=True)
    ids = torch.zeros(3, 5, dtype=torch.long)
    out = module(ids)
    assert out.shape == (3, 5, 6)
    torch.testing.assert_close(out, table(torch.arange(5)).expand(3, 5, 6))
    shifted_layer = REGISTRY["position_embedding"].model_validate(
        {"num_positions": 16, "embedding_dim": 6, "offset": 2})
    shifted = eval(shifted_layer.init_source([T((5,), L)]), namespace())
    shifted.load_state_dict(table.state_dict(), strict=True)
    torch.testing.assert_close(shifted(ids)[0], table.weight[2:7])


def test_embedding_state_dict_and_padding_idx():
    layer = REGISTRY["embedding"].model_validate({"num_embeddings": 10, "embedding_dim": 4,
                                                   "padding_idx": 0})
    module = eval(layer.init_source([T((5,), L)]), namespace())
    assert set(module.state_dict()) == {"weight"}
    assert module.padding_idx == 0 and torch.all(module.weight[0] == 0)


def test_sinusoidal_encoding_values_and_state_dict():
    layer = REGISTRY["sinusoidal_position_encoding"].model_validate({"max_len": 50})
    for d in (8, 7):
        module = eval(layer.init_source([T((5, d))]), namespace())
        assert module.state_dict() == {} and list(dict(module.named_buffers())) == ["pe"]
        x = torch.zeros(2, 5, d)
        pe = module(x)[0]
        pos, i = 3, 2  # the pair of columns 2i, 2i+1 at position 3
        angle = pos / 10000 ** (2 * i / d)
        torch.testing.assert_close(pe[pos, 2 * i], torch.tensor(math.sin(angle)))
        torch.testing.assert_close(pe[pos, 2 * i + 1], torch.tensor(math.cos(angle)))
        torch.testing.assert_close(module(x + 1.5)[1], pe + 1.5)


PARAMETER_CASES = [
    ({"shape": (1, 8)}, [T((5, 8))]),
    ({"shape": (1, 1, 8), "init": "normal", "std": 0.5}, [T((3, 4, 4))]),
    ({"shape": (8,), "init": "ones"}, [T((6,), L)]),
    ({"shape": (4, 3), "init": "uniform", "std": 0.1}, [T((2,))]),
    ({"shape": ()}, [T((2,))]),
]


@pytest.mark.parametrize("args,ins", PARAMETER_CASES, ids=[str(c[0]) for c in PARAMETER_CASES])
def test_parameter(args, ins):
    """A parameter is an nn.Parameter attribute of the generated parent module, named "" in
    params(); the call expands it over the input's batch."""
    layer = REGISTRY["parameter"].model_validate(args)
    out = layer.infer(ins)
    assert out.shape == tuple(args["shape"])
    assert layer.params(ins) == {"": tuple(args["shape"])} and layer.flops(ins, (out,)) == 0
    parent = nn.Module()
    parent.cls_token = eval(layer.init_source(ins), namespace())
    assert isinstance(parent.cls_token, nn.Parameter)
    assert {n: tuple(p.shape) for n, p in parent.named_parameters()} == \
        {"cls_token" + ("." + n if n else ""): s for n, s in layer.params(ins).items()}
    assert list(parent.state_dict()) == ["cls_token"]
    x = make_input(ins[0], torch.Generator().manual_seed(0))
    got = eval(layer.call_source("self.cls_token", ["x"], ins), {"self": parent, "x": x})
    assert tuple(got.shape) == (BATCH, *out.shape)
    torch.testing.assert_close(got[1], parent.cls_token.detach())
    values = parent.cls_token.detach()
    init = args.get("init", "zeros")
    if init == "zeros":
        assert torch.all(values == 0)
    elif init == "ones":
        assert torch.all(values == 1)
    elif init == "uniform":
        assert values.abs().max() <= args["std"]
    if init in ("normal", "uniform"):
        assert values.std() > 0
    got.sum().backward()  # gradients reach the parameter through the expansion
    assert parent.cls_token.grad is not None


def test_zeros_like_gives_bert_token_types():
    layer = REGISTRY["zeros_like"].model_validate({})
    ids = torch.randint(0, 9, (2, 5))
    out = eval(layer.functional_source(["ids"], [T((5,), L)]), {**namespace(), "ids": ids})
    assert out.dtype == torch.long and torch.all(out == 0)
    assert layer.infer([T((5,), L)]) == T((5,), L)
    assert REGISTRY["ones_like"].model_validate({"dtype": "float"}).infer([T((5,), L)]) == T((5,))


# ---- errors --------------------------------------------------------------------------------------
ERRORS = [
    ("embedding", {"num_embeddings": 10, "embedding_dim": 4}, [T((5,))], "long"),
    ("embedding", {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 10}, [T((5,), L)],
     "padding_idx"),
    ("position_embedding", {"num_positions": 4, "embedding_dim": 6}, [T((5,), L)], "4 rows"),
    ("position_embedding", {"num_positions": 6, "embedding_dim": 6, "offset": 2}, [T((5, 3))],
     "from row 2"),
    ("position_embedding", {"num_positions": 4, "embedding_dim": 6}, [T((), L)], "sequence"),
    ("sinusoidal_position_encoding", {"max_len": 4}, [T((5, 8))], "max_len"),
    ("sinusoidal_position_encoding", {"d_model": 6}, [T((5, 8))], "d_model"),
    ("sinusoidal_position_encoding", {}, [T((8,))], "[B, T, D]"),
    ("lstm", {"hidden_size": 4}, [T((5,))], "[B, T, F]"),
    ("gru", {"hidden_size": 4}, [T((2, 5, 3))], "[B, T, F]"),
    ("sdpa", {"heads": 3}, [T((5, 8)), T((5, 8)), T((5, 8))], "divisible by heads=3"),
    ("sdpa", {"heads": 2}, [T((5, 8)), T((5, 6)), T((5, 8))], "must be 8 wide"),
    ("sdpa", {"heads": 2}, [T((5, 8)), T((5, 8)), T((4, 8))], "different lengths"),
    ("sdpa", {"heads": 2}, [T((5, 8)), T((6, 8)), T((6, 8)), T((5,), L)], "[B, 6]"),
    ("sdpa", {"heads": 2}, [T((5, 8), L), T((5, 8)), T((5, 8))], "float"),
    ("multihead_attention", {"num_heads": 3}, [T((5, 8))], "num_heads=3"),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((6, 8)), T((5, 8))],
     "different lengths"),
    ("multihead_attention", {"num_heads": 2}, [T((5, 8)), T((6, 8)), T((5,), B)], "[B, 6]"),
    ("multihead_attention", {"num_heads": 2}, [T((8,))], "[B, T, D]"),
    ("transformer_encoder_layer", {"nhead": 3}, [T((5, 8))], "nhead=3"),
    ("transformer_encoder_layer", {"nhead": 2}, [T((5, 8)), T((4,), B)], "[B, 5]"),
    ("transformer_decoder_layer", {"nhead": 2}, [T((5, 8)), T((7, 6))], "width"),
    ("transformer_decoder_layer", {"nhead": 2}, [T((5, 8)), T((7, 8)), T((6,), B)], "[B, 5]"),
]


@pytest.mark.parametrize("kind,args,ins,words", ERRORS, ids=[f"{e[0]}-{e[3]}" for e in ERRORS])
def test_shape_errors(kind, args, ins, words):
    with pytest.raises(ShapeError) as err:
        REGISTRY[kind].model_validate(args).infer(ins)
    assert words in err.value.message


def test_batch_first_is_fixed():
    with pytest.raises(ValueError):
        REGISTRY["lstm"].model_validate({"hidden_size": 4, "batch_first": False})
    assert REGISTRY["multihead_attention"].model_validate({"num_heads": 2, "batch_first": True})
