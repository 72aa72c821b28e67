"""Shared check for layer kinds: a kind's rules agree with the torch module it generates.

`check_layer(kind, args, input_types)` builds the module from `init_source` (exactly as generated
code does), runs a batch of 2 through it, and asserts that
- the output shape(s) equal `infer`, per sample,
- the module's parameters and persistent buffers equal `params()` and `buffers()` by name and shape,
- `flops()` equals torch.utils.flop_counter's count for that forward, per sample, less what
  `flops_unseen_on_cpu()` declares (fused CPU kernels flop_counter has no formula for),
- `functional_source`, when given, computes the same output as the module.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nnspec.layers import REGISTRY, T
from nnspec.runtime import HELPERS

BATCH = 2


def namespace() -> dict:
    return {"torch": torch, "nn": nn, "F": F, "math": math, **HELPERS}


def make_input(t: T, gen: torch.Generator) -> torch.Tensor:
    shape = (BATCH, *t.shape)
    if t.dtype == "long":
        return torch.randint(0, 4, shape, generator=gen)
    if t.dtype == "bool":
        return torch.rand(shape, generator=gen) > 0.3
    return torch.randn(shape, generator=gen)


def check_layer(kind: str, args: dict, ins: list[T], inputs: list[torch.Tensor] | None = None):
    layer = REGISTRY[kind].model_validate(args)
    outs = layer.infer(ins)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(0)
    xs = inputs if inputs is not None else [make_input(t, gen) for t in ins]
    ns = namespace()
    names = [f"a{i}" for i in range(len(xs))]
    if getattr(layer, "functional_only", False):
        module = None
        src = layer.functional_source(names, ins)
        run = lambda: eval(src, {**ns, **dict(zip(names, xs))})  # noqa: E731
    else:
        module = eval(layer.init_source(ins), ns).eval()
        run = lambda: module(*xs)  # noqa: E731
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            got = run()
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(outs), (kind, len(got), len(outs))
    for g, o in zip(got, outs):
        assert tuple(g.shape) == (BATCH, *o.shape), (kind, tuple(g.shape), o.shape)
    if module is not None:
        params = {n: tuple(p.shape) for n, p in module.named_parameters()}
        assert params == {n: tuple(s) for n, s in layer.params(ins).items()}, (kind, params)
        buffers = {n: tuple(b.shape) for n, b in module.named_buffers()
                   if n in module.state_dict()}
        assert buffers == {n: tuple(s) for n, s in layer.buffers(ins).items()}, (kind, buffers)
        src = layer.functional_source(names, ins)
        if src is not None:
            with torch.no_grad():
                alt = eval(src, {**ns, **dict(zip(names, xs))})
            alt = alt if isinstance(alt, tuple) else (alt,)
            for a, g in zip(alt, got):
                torch.testing.assert_close(a, g)
    seen = layer.flops(ins, outs) - layer.flops_unseen_on_cpu(ins, outs)
    assert seen * BATCH == counter.get_total_flops(), (kind, seen * BATCH, counter.get_total_flops())
    return layer, got
