"""Sample inputs for a checked model: one batch per model input, drawn so that every consumer can
take it (embedding ids below num_embeddings, padding masks that leave a key to attend to). The
differential tests and the ONNX export's onnxruntime check draw the same batches."""
from __future__ import annotations

import torch

from nnspec.ir import Leaf, ModuleDef, Seq

BATCH = 2
ATTENTION = {"multihead_attention", "transformer_encoder_layer", "transformer_decoder_layer",
             "sdpa"}
# ops whose result holds the input's values rearranged: a consumer of the result sees them
PASS_THROUGH = {"identity", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "split",
                "chunk", "select", "narrow", "flatten", "cat", "stack", "pad",
                "repeat_interleave", "expand", "abs"}   # abs: ids are never negative


def consumers(root: ModuleDef) -> dict[int, list[tuple]]:
    """Root input index -> (layer, position among its tensors) of each layer that reads it."""
    found: dict[int, list[tuple]] = {}
    _walk(root, {id(v): i for i, v in enumerate(root.inputs)}, found, set())
    return found


def _walk(module: ModuleDef, origin: dict[int, int], found: dict, active: set) -> None:
    if id(module) in active:
        return
    active = active | {id(module)}
    for op in module.ops:
        vals = list(op.args) + list(op.kwargs.values())
        src = [origin.get(id(v)) for v in vals]
        layer = op.layer
        if op.target is None or isinstance(op.target, Leaf):
            for pos, s in enumerate(src):
                if s is not None:
                    found.setdefault(s, []).append((layer, pos, vals[pos].type))
            if op.target is None and layer.kind in PASS_THROUGH:
                s = next((s for s in src if s is not None), None)
                if s is not None:
                    for v in op.outs:
                        origin[id(v)] = s
        elif isinstance(op.target, ModuleDef):
            inner = {id(v): s for v, s in zip(op.target.inputs, src) if s is not None}
            _walk(op.target, inner, found, active)
        else:
            _walk_seq(op.target, src, found, active, origin)


def _walk_seq(seq: Seq, src: list, found: dict, active: set, origin: dict) -> None:
    for i, (item, extra) in enumerate(zip(seq.items, seq.extras)):
        ins = (src if i == 0 else [None]) + [origin.get(id(v)) for v in extra]
        if isinstance(item, Leaf):
            for pos, s in enumerate(ins):
                if s is not None:
                    found.setdefault(s, []).append((item.layer, pos, item.ins[pos]))
        elif isinstance(item, ModuleDef):
            inner = {id(v): s for v, s in zip(item.inputs, ins) if s is not None}
            _walk(item, inner, found, active)
        else:
            _walk_seq(item, ins, found, active, origin)


def draw_inputs(root: ModuleDef, gen: torch.Generator, batch: int = BATCH,
                dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """One batch of `batch` samples per model input; float inputs in `dtype`."""
    uses = consumers(root)
    out = []
    for i, v in enumerate(root.inputs):
        shape = (batch, *v.type.shape)
        readers = uses.get(i, [])
        masks = [layer.kind for layer, pos, t in readers
                 if layer.kind in ATTENTION and pos > 0 and len(t.shape) == 1]
        if v.type.dtype == "float":
            x = torch.randn(shape, generator=gen, dtype=dtype)
        elif v.type.dtype == "bool" or masks:
            # mostly keys to attend to: 1 means attend for sdpa, padding for the others
            attend = 0.7 if masks[:1] == ["sdpa"] else 0.3
            x = torch.rand(shape, generator=gen) < attend
            if v.type.dtype == "long":
                x = x.long()
        else:
            bounds = [layer.num_embeddings for layer, _, _ in readers if layer.kind == "embedding"]
            x = torch.randint(0, min(bounds, default=5), shape, generator=gen)
        if masks and x.dim() == 2:
            # keep key 0 attended to: sdpa attends where the mask is nonzero, torch's padding
            # masks (the other kinds) pad there; a row of padding only would give NaN
            if not x.is_floating_point():
                x[:, 0] = 1 if masks[0] == "sdpa" else 0
        out.append(x)
    return out
