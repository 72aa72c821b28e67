"""specs/llama.nn against transformers' LlamaForCausalLM (random init, no downloads): Llama-3-8B's
parameter count, and at a tiny configuration a strict state_dict load, equal logits and equal
greedy generation, with and without the k/v cache."""
from pathlib import Path

import pytest
import torch
import transformers

import nnspec
from nnspec.generate import generate

SPEC = Path(__file__).resolve().parents[2] / "specs" / "llama.nn"
TINY = {"vocab_size": 128, "hidden": 64, "intermediate": 96, "layers": 2, "heads": 4,
        "kv_heads": 2, "seq": 16}


def _config(**rope) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=64, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0, **rope})


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_config()).eval()
    # Llama initialises the norms to ones: randomise them so a dropped weight would show
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def built(reference):
    model = nnspec.load(SPEC, **TINY).build().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return model


def test_parameter_count_and_flops(reference):
    spec = nnspec.load(SPEC, **TINY)
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters())
    assert spec.summary()["flops"] > 0


def test_defaults_are_llama_3_8b():
    config = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        tie_word_embeddings=False)
    with torch.device("meta"):   # shapes only: 8B float32 weights would not fit here
        reference = transformers.LlamaForCausalLM(config)
    want = sum(p.numel() for p in reference.parameters())
    assert want == 8_030_261_248
    assert nnspec.load(SPEC).summary()["params"] == want


def test_logits_equal_transformers(reference, built):
    ids = torch.randint(0, 128, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = built(ids)
        want = reference(ids).logits
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()


def test_logits_equal_at_other_lengths(reference, built):
    """Rotary positions and the causal mask follow the input's length, not the spec's seq."""
    for length in (1, 5, 40):
        ids = torch.randint(0, 128, (2, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            got, want = built(ids), reference(ids).logits
        assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item(), length


def test_greedy_generation_equals_transformers(reference, built):
    """transformers decodes with its KV cache; nnspec recomputes the forward for every step."""
    prompt = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(2))
    got = generate(built, prompt, max_new_tokens=12)
    with torch.no_grad():
        want = reference.generate(prompt, max_new_tokens=12, do_sample=False,
                                  attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert got.shape == (2, 18)
    assert torch.equal(got, want)


@pytest.mark.parametrize("batch,prompt_len", [(1, 1), (3, 5)])
def test_cached_generation_equals_uncached(built, batch, prompt_len):
    """With the cache each step feeds one token; the tokens and the state after are the same."""
    prompt = torch.randint(0, 128, (batch, prompt_len),
                           generator=torch.Generator().manual_seed(batch))
    cached = generate(built, prompt, max_new_tokens=20, use_cache=True)
    assert torch.equal(cached, generate(built, prompt, max_new_tokens=20))
    # the cache is dropped after: a plain forward is the uncached one again
    assert all(m.cache is None for m in built.modules() if hasattr(m, "cache"))


def test_cached_step_logits_equal_the_full_forward(built):
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(7))
    caches = [m for m in built.modules() if hasattr(m, "start_cache")]
    with torch.no_grad():
        full = built(ids)
        for m in caches:
            m.start_cache()
        try:
            steps = [built(ids[:, :4])] + [built(ids[:, i:i + 1]) for i in range(4, 9)]
        finally:
            for m in caches:
                m.stop_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_needs_kv_attention(in_root):
    model = nnspec.load("specs/gpt2_small.nn", seq=8, n_layer=1, n_embd=8, n_head=2,
                        vocab_size=16, n_positions=32).build()
    with pytest.raises(ValueError, match="kv_attention"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), max_new_tokens=2, use_cache=True)


def test_generation_is_the_uncached_forward_argmax(built):
    prompt = torch.randint(0, 128, (1, 4), generator=torch.Generator().manual_seed(3))
    ids = generate(built, prompt, max_new_tokens=5)
    with torch.no_grad():
        logits = built(ids)
    # every generated token is the argmax of the forward over the tokens before it
    assert torch.equal(ids[0, 4:], logits[0, 3:-1].argmax(-1))
    assert torch.equal(ids[:, :4], prompt)


def test_generation_stops_at_eos(built):
    prompt = torch.randint(0, 128, (1, 4), generator=torch.Generator().manual_seed(3))
    first = generate(built, prompt, max_new_tokens=1)[0, -1].item()
    out = generate(built, prompt, max_new_tokens=8, eos_token_id=first)
    assert out.shape == (1, 5) and built.training is False


def test_generation_refuses_float_ids(built):
    with pytest.raises(ValueError, match="long"):
        generate(built, torch.zeros(1, 3), max_new_tokens=2)


@pytest.mark.parametrize("rope", [{"rope_type": "linear", "factor": 4.0},
                                  {"rope_type": "dynamic", "factor": 2.0},
                                  {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 16}],
                         ids=lambda r: r["rope_type"])
def test_rope_scalings_equal_transformers(rope):
    torch.manual_seed(4)
    reference = transformers.LlamaForCausalLM(_config(**rope)).eval()
    scaling = {"scaling": rope["rope_type"], "factor": rope["factor"],
               # dynamic NTK grows past transformers' max_position_embeddings (64 here)
               "original_max_position_embeddings": rope.get("original_max_position_embeddings",
                                                            64)}
    for k in ("low_freq_factor", "high_freq_factor"):
        if k in rope:
            scaling[k] = rope[k]
    text = SPEC.read_text().replace(
        "rotary(head_dim, theta=theta)",
        "rotary(head_dim, theta=theta, " + ", ".join(
            f"{k}={v!r}".replace("'", '"') for k, v in scaling.items()) + ")")
    model = nnspec.loads(text, name="llama_scaled.nn", **TINY).build().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    for length in (16, 80):   # 80 > 64: dynamic NTK rescales
        ids = torch.randint(0, 128, (2, length), generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            got, want = model(ids), reference(ids).logits
        assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item(), length
