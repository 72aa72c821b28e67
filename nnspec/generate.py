"""Greedy text generation with a built decoder spec: `generate(spec.build(), input_ids, N)`.

The model is any built spec whose one input is token ids [B, T] and whose first output is logits
[B, T, vocab] (a causal decoder such as specs/llama.nn). By default each step runs the
whole forward again on the sequence so far and appends the most likely next token.

With `use_cache=True` the prompt runs once and each later step feeds only the newest token: every
`kv_attention` keeps the k and v it has seen and every `rotary` its position. That is exact only
when nothing else in the model mixes positions: all attention must be `kv_attention` (a plain
`sdpa`, learned position tables or recurrent layers would see the one new token alone), which the
spec's author vouches for; tests/specs/test_llama.py checks it equals the uncached run.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def generate(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
             eos_token_id: int | None = None, use_cache: bool = False) -> torch.Tensor:
    """Greedy decoding: the prompt followed by up to `max_new_tokens` argmax tokens.

    Args:
        model: a built spec (`nnspec.load(path).build()`), put in eval mode for the run and
            restored after.
        input_ids: long [B, T] prompt tokens.
        max_new_tokens: how many tokens to append at most.
        eos_token_id: stop once every sequence has produced it (later tokens of a sequence that
            ended are eos as well, as transformers pads them).
        use_cache: feed only the new token after the prompt (module docstring).

    Returns:
        long [B, T + n] with n <= max_new_tokens.

    Raises:
        ValueError: bad input_ids or max_new_tokens, or use_cache on a model without
            kv_attention layers.
    """
    if input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError(f"input_ids must be long [B, T], got {input_ids.dtype} "
                         f"{list(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    caches = [m for m in model.modules() if hasattr(m, "start_cache")] if use_cache else []
    if use_cache and not any(type(m).__name__ == "KVCacheAttention" for m in caches):
        raise ValueError("use_cache needs a model whose attention is kv_attention (its k/v cache)")
    was_training = model.training
    model.eval()
    for m in caches:
        m.start_cache()
    ids = input_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    try:
        with torch.no_grad():
            step = ids
            for _ in range(max_new_tokens):
                out = model(step)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                nxt = logits[:, -1].argmax(dim=-1)
                if eos_token_id is not None:
                    nxt = nxt.masked_fill(done, eos_token_id)
                    done |= nxt == eos_token_id
                ids = torch.cat((ids, nxt[:, None]), dim=1)
                step = nxt[:, None] if use_cache else ids
                if eos_token_id is not None and bool(done.all()):
                    break
    finally:
        for m in caches:
            m.stop_cache()
        model.train(was_training)
    return ids
