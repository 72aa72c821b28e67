"""The k/v cache path on random decoders (decoders.py): the uncached forward agrees with the
reference interpreter (harness.check_spec), a cached run (the prompt once, then one token a step,
as nnspec.generate(use_cache=True) feeds it) gives the uncached forward's logits at every position
in float64, and greedy generation with and without the cache gives the same tokens.

CI draws COUNT decoders (derandomized, so the same ones everywhere); NNSPEC_KV_COUNT=500 draws more.
"""
from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings

import nnspec
from nnspec.generate import generate

from .decoders import decoders
from .harness import check_spec, default_dtype, fill_state

COUNT = int(os.environ.get("NNSPEC_KV_COUNT", "30"))
SETTINGS = settings(max_examples=COUNT, derandomize=True, deadline=None, database=None,
                    print_blob=True, suppress_health_check=list(HealthCheck))
# what COUNT decoders must exercise together
COVERED = {"grouped_kv", "rotary_default", "rotary_linear", "rotary_llama3", "window", "repeat",
           "list", "head_own", "head_tied", "head_tied_from_block"}


def check_cached(text: str, vocab: int, seed: int = 0) -> None:
    spec = nnspec.loads(text, name="decoder.nn")
    check_spec(spec, seed=seed)
    with default_dtype(torch.float64):
        model = spec.build().to(torch.float64).eval()
        gen = torch.Generator().manual_seed(seed)
        fill_state(model.state_dict(), gen)
        prompt, steps = 3, 4
        ids = torch.randint(0, vocab, (2, prompt + steps), generator=gen)
        with torch.no_grad():
            full = model(ids)
            caches = [m for m in model.modules() if hasattr(m, "start_cache")]
            assert caches, "a decoder has kv_attention layers"
            for m in caches:
                m.start_cache()
            try:
                parts = [model(ids[:, :prompt])]
                parts += [model(ids[:, i:i + 1]) for i in range(prompt, prompt + steps)]
            finally:
                for m in caches:
                    m.stop_cache()
        cached = torch.cat(parts, dim=1)
        err = (cached - full).abs().max().item() / max(full.abs().max().item(), 1.0)
        assert err < 1e-10, f"cached logits differ from the uncached forward by {err}:\n{text}"
        uncached = generate(model, ids[:, :prompt], steps)
        assert torch.equal(generate(model, ids[:, :prompt], steps, use_cache=True), uncached), \
            f"cached generation differs:\n{text}"


def test_cached_decoding_equals_the_uncached_forward():
    drawn: set[str] = set()

    @SETTINGS
    @given(decoders())
    def one(decoder):
        drawn.update(decoder.drawn)
        check_cached(decoder.text, decoder.vocab)

    one()
    assert sorted(COVERED - drawn) == [], "constructs no decoder drew"
