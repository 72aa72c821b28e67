"""bert_base and gpt2_small against transformers' models (random init, no downloads)."""
import pytest
import torch
import transformers

import nnspec


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig()).eval()


def test_bert_loads_transformers_weights_and_matches(bert, in_root):
    spec = nnspec.load("specs/bert_base.nn", seq=24)
    model = spec.build().eval()
    model.load_state_dict(bert.state_dict(), strict=True)
    assert spec.summary()["params"] == sum(p.numel() for p in bert.parameters())
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 30522, (3, 24), generator=gen)
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[1, 15:] = 0  # padded sequences
    mask[2, 5:] = 0
    with torch.no_grad():
        hidden, pooled = model(ids, mask)
        ref = bert(input_ids=ids, attention_mask=mask)
    assert (hidden - ref.last_hidden_state).abs().max().item() <= 1e-4
    assert (pooled - ref.pooler_output).abs().max().item() <= 1e-4
    # inputs by name work too
    with torch.no_grad():
        again, _ = model(input_ids=ids, attention_mask=mask)
    assert torch.equal(again, hidden)


@pytest.fixture(scope="module")
def gpt2_spec():
    return nnspec.load("specs/gpt2_small.nn", seq=16, dropout_p=0.0)


def test_gpt2_parameter_count_with_tied_head(gpt2_spec, in_root):
    model = gpt2_spec.build()
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    expected = sum(p.numel() for p in reference.parameters())
    assert expected == 124_439_808
    assert sum(p.numel() for p in model.parameters()) == expected
    assert gpt2_spec.summary()["params"] == expected
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_matches_transformers_with_its_weights(gpt2_spec, in_root):
    """Same names as GPT2LMHeadModel; its Conv1D weights are the transpose of linear's."""
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    model = gpt2_spec.build().eval()
    state = reference.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    state = {k: (v.t() if k.endswith(conv1d) else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = model(ids)
        want = reference(ids).logits
    assert (got - want).abs().max().item() <= 1e-3 * want.abs().max().item()


def test_gpt2_is_causal(gpt2_spec, in_root):
    model = gpt2_spec.build().eval()
    ids = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 7) % 50257
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[0, :10], b[0, :10])  # earlier positions never see later tokens
    assert not torch.allclose(a[0, 10:], b[0, 10:])
