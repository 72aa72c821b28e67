"""Recipes for attention as large language models use it: sdpa with grouped-query heads, a
sliding window, a padding mask and an additive bias, rotary position embeddings, and Swin's
shifted window attention on channels-last maps."""
from __future__ import annotations

from hypothesis import strategies as st

from nnspec.layers import T

from .recipes import (Call, Draw, Extra, Recipe, add, divisors, heads_of, ints, padding_mask,
                      seq_type)


def sdpa_args(d: Draw, t: T) -> dict:
    heads = heads_of(d, t)
    args = {"heads": heads, "causal": d(st.booleans()), "scale": d(st.sampled_from([None, 0.5])),
            "window": d(st.sampled_from([None, 1, 2]))}
    kv = d(st.sampled_from(divisors(heads)))
    if kv != heads or d(st.booleans()):
        args["kv_heads"] = kv
    return args


def sdpa_extras(d: Draw, t: T, a: dict) -> list[Extra]:
    kv = a.get("kv_heads") or a["heads"]
    width = t.shape[1] // a["heads"] * kv
    # k and v from the main input: the same width (a nonlinearity), or kv_heads' narrower one
    project = [] if width == t.shape[1] else [Call("linear", {"out_features": width}, positional=1)]
    extras = [Extra(project + [Call("sigmoid", {})]), Extra(project + [Call("tanh", {})])]
    if not a.get("causal") and d(st.booleans()):
        extras.append(Extra(padding_mask(True).chain, "mask"))
    if d(st.booleans()):
        # a bias [heads or 1, T, T]: a square projection of the main input, heads-broadcast
        extras.append(Extra([Call("linear", {"out_features": t.shape[0]}, positional=1),
                             Call("unsqueeze", {"dim": 1})], "bias"))
    return extras


add(Recipe("sdpa", (2,), sdpa_args, extras=sdpa_extras, sample=lambda d: seq_type(d, 2)))
add(Recipe("kv_attention", (2,), sdpa_args, extras=sdpa_extras,
           sample=lambda d: seq_type(d, 2)))


def rotary_args(d: Draw, t: T) -> dict | None:
    evens = [h for h in divisors(t.shape[1]) if h % 2 == 0]
    if not evens:
        return None
    args = {"head_dim": d(st.sampled_from(evens)), "theta": d(st.sampled_from([10000.0, 500.0]))}
    scaling = d(st.sampled_from(["default", "linear", "dynamic", "llama3"]))
    if scaling == "dynamic" and args["head_dim"] < 4:
        scaling = "linear"
    if scaling != "default":
        args.update(scaling=scaling, factor=d(st.sampled_from([2.0, 8.0])),
                    original_max_position_embeddings=d(ints(1, 4)))
    return args


add(Recipe("rotary", (2,), rotary_args, sample=lambda d: T((d(ints(1, 4)), 2 * d(ints(1, 4))))))


def window_attention_args(d: Draw, t: T) -> dict:
    # windows larger than the map (padding, no shift) and smaller ones (shift and mask) both
    # (and as torchvision's [height, width] pairs, sometimes of different sides)
    if d(st.booleans()):
        window = d(ints(1, 4))
        shift = d(ints(0, window - 1))
    else:
        window = (d(ints(1, 4)), d(ints(1, 4)))
        shift = (d(ints(0, window[0] - 1)), d(ints(0, window[1] - 1)))
    return {"heads": d(st.sampled_from(divisors(t.shape[2]))), "window": window,
            "shift": shift, "qkv_bias": d(st.booleans()), "proj_bias": d(st.booleans())}


add(Recipe("shifted_window_attention", (3,), window_attention_args,
           sample=lambda d: T((d(ints(1, 6)), d(ints(1, 6)), d(st.sampled_from([2, 4, 6]))))))
