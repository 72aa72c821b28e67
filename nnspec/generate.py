"""Greedy text generation with a built decoder spec: `generate(spec.build(), input_ids, N)`.

The model is any built spec whose one input is token ids [B, T] and whose first output is logits
[B, T, vocab] (a causal decoder such as tests/specs/llama_tiny.nn). Each step runs the whole
forward again on the sequence so far and appends the most likely next token: no KV cache yet, so a
step costs a full forward, but the result is by construction the uncached forward's.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def generate(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
             eos_token_id: int | None = None) -> torch.Tensor:
    """Greedy decoding: the prompt followed by up to `max_new_tokens` argmax tokens.

    Args:
        model: a built spec (`nnspec.load(path).build()`), put in eval mode for the run and
            restored after.
        input_ids: long [B, T] prompt tokens.
        max_new_tokens: how many tokens to append at most.
        eos_token_id: stop once every sequence has produced it (later tokens of a sequence that
            ended are eos as well, as transformers pads them).

    Returns:
        long [B, T + n] with n <= max_new_tokens.
    """
    if input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError(f"input_ids must be long [B, T], got {input_ids.dtype} "
                         f"{list(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    ids = input_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                out = model(ids)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                nxt = logits[:, -1].argmax(dim=-1)
                if eos_token_id is not None:
                    nxt = nxt.masked_fill(done, eos_token_id)
                    done |= nxt == eos_token_id
                ids = torch.cat((ids, nxt[:, None]), dim=1)
                if eos_token_id is not None and bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return ids
