"""Structured pruning of attention heads: remove whole heads of sdpa attentions, so the model
becomes a smaller dense one that computes what the original computes with those heads' outputs
zeroed.

Each head is scored by the Ln norm (L2 by default) of all its weights together: its rows of the
q, k and v projections and its columns of the output projection (biases left out). Each attention
keeps its `round(H * (1 - amount))` best heads. The number of heads is baked into the generated
forward (`unflatten(-1, (H, -1))`), so the smaller model is built from the written-back spec:
the q/k/v projections' widths, the split of a fused one and `heads=` are rewritten in the spec
text, the weights are cut to match and loaded strictly.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from nnspec.compress.attention import Attention, find_attentions
from nnspec.compress.checked import Prune
from nnspec.compress.errors import CompressError
from nnspec.compress.writeback import _offset, _section_bounds, _set_width, arg_end


def head_scores(model: nn.Module, a: Attention, norm: float = 2.0) -> torch.Tensor:
    """[H]: the Ln norm of each head's q/k/v rows and output-projection columns."""
    hd = a.head_dim
    total = torch.zeros(a.heads, dtype=torch.float64)
    for p in (a.q, a.k, a.v):
        w = model.get_submodule(p.layer).weight.detach()[p.offset:p.offset + a.heads * hd]
        total += w.double().reshape(a.heads, -1).abs().pow(norm).sum(1)
    w = model.get_submodule(a.out).weight.detach().double()
    total += w.reshape(w.shape[0], a.heads, hd).abs().pow(norm).sum((0, 2))
    return total.pow(1 / norm)


def choose_heads(model: nn.Module, spec, directives: tuple[Prune, ...]) -> dict[str, list[int]]:
    """The heads each chosen attention keeps (sorted indices), by attention name."""
    by_name = {a.name: a for a in find_attentions(spec.ir)}
    keep = {}
    for d in directives:
        for name in d.layers:
            a = by_name[name]
            scores = head_scores(model, a, d.norm)
            keep[name] = sorted(scores.topk(a.kept(d.amount)).indices.tolist())
    return keep


def prune_heads(model: nn.Module, spec, directives: tuple[Prune, ...]):
    """(the smaller model, its spec text, its Spec): `model` without its weakest heads.

    Raises:
        CompressError: the smaller architecture cannot be written as a spec, or does not load.
    """
    keep = choose_heads(model, spec, directives)
    attentions = find_attentions(spec.ir)
    text = written_back(spec, attentions, keep)
    new_spec = _load(text, spec)
    state = cut_state(model.state_dict(), [a for a in attentions if a.name in keep], keep)
    pruned = new_spec.build()
    try:
        pruned.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CompressError(f"the spec with fewer heads does not load the cut weights: "
                            f"{str(err).splitlines()[0]}") from None
    return pruned.eval(), text, new_spec


def _rows(a: Attention, offset: int, heads: list[int]) -> torch.Tensor:
    hd = a.head_dim
    return torch.cat([torch.arange(offset + h * hd, offset + (h + 1) * hd) for h in heads])


def cut_state(state: dict, attentions: list[Attention], keep: dict[str, list[int]]) -> dict:
    """A copy of `state` without the removed heads' q/k/v rows and output-projection columns."""
    state = dict(state)
    for a in attentions:
        heads = keep[a.name]
        projections = sorted((a.q, a.k, a.v), key=lambda p: p.offset)
        rows = [(p.layer, _rows(a, p.offset, heads)) for p in projections]
        if a.fused:  # one linear: the kept rows of its q, k and v pieces, in the split's order
            rows = [(a.q.layer, torch.cat([r for _, r in rows]))]
        for layer, idx in rows:
            for suffix in ("weight", "bias"):
                key = f"{layer}.{suffix}"
                if key in state:
                    state[key] = state[key][idx].clone()
        key = f"{a.out}.weight"
        state[key] = state[key][:, _rows(a, 0, heads)].clone()
    return state


# ---- writing the smaller architecture back -------------------------------------------------------

def written_back(spec, attentions: list[Attention], keep: dict[str, list[int]]) -> str:
    """The spec text with the new widths and head counts (and without its compress section).

    Every attention written at the same place in the text must keep the same heads: a block
    used for attentions pruned differently (or one pruned and one skipped) cannot be written
    once, and is refused.
    """
    edits: dict[tuple, tuple[str, str]] = {}   # (source, start, end) -> (new text, attention)
    for a in attentions:
        kept = len(keep[a.name]) if a.name in keep else a.heads
        width = kept * a.head_dim
        wanted = [(a.span, lambda call, k=kept: _set_keyword(call, "heads", k, a.name))]
        if a.fused:
            wanted += [(a.q.span, _width(3 * width, a.q.layer)), (a.split, _width(width, a.name))]
        else:
            wanted += [(p.span, _width(width, p.layer)) for p in (a.q, a.k, a.v)]
        for span, change in wanted:
            source = span.source
            start = _offset(source.text, span.line, span.col)
            end = _offset(source.text, span.end_line, span.end_col)
            new = change(source.text[start:end])
            key = (id(source), start, end)
            if key in edits and edits[key][0] != new:
                raise CompressError(
                    f"cannot write the pruned model back: `{edits[key][1]}` and `{a.name}` are "
                    f"written once ({source.name}:{span.line}) but keep different heads",
                    "prune every use of that block alike, or write the blocks out separately")
            edits[key] = (new, a.name)
    sources = {id(span.source): span.source for a in attentions
               for span in (a.span, a.q.span, a.k.span, a.v.span)}
    texts = {}
    for sid, source in sources.items():
        text = source.text
        for (s, start, end), (new, _) in sorted(edits.items(), key=lambda e: -e[0][1]):
            if s == sid:
                text = text[:start] + new + text[end:]
        texts[sid] = (source, text)
    return _assemble(spec, texts)


def _assemble(spec, texts: dict) -> str:
    """The root text with its compress section dropped and edited included files inlined."""
    root = spec.program.root_source
    text = texts.pop(id(root), (root, root.text))[1]
    if "compress" in spec.program.sections:
        s, e = _section_bounds(text)
        text = text[:s] + "# compress section applied by `nnspec compress`" + text[e:]
    base = _base(spec)
    for source, edited in texts.values():
        if source.text == edited:
            continue
        if re.search(r'(?m)^\s*use\s+"', edited):
            raise CompressError(f"cannot write the pruned model back: {source.name} includes "
                                "other files", "include the attention blocks directly")
        uses = [m for m in re.finditer(r'(?m)^[ \t]*use[ \t]+"([^"]+)"[^\n]*', text)
                if _reads(base / m.group(1), source.text)]
        if len(uses) != 1:
            raise CompressError(f"cannot write the pruned model back: {source.name} is not "
                                "included by the spec itself", "include it from the root spec")
        m = uses[0]
        inlined = f"# {m.group(0).strip()}, with fewer attention heads\n{edited.rstrip()}\n"
        text = text[:m.start()] + inlined + text[m.end():]
    return text


def _reads(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n") == \
            text.replace("\r\n", "\n")
    except OSError:
        return False


def _base(spec) -> Path:
    return Path(spec.source_name).resolve().parent


def _load(text: str, spec):
    from nnspec.compile import loads
    from nnspec.lang.diagnostics import SpecError

    name = f"{Path(spec.source_name).stem}_pruned.nn"
    try:
        return loads(text, name=name, base=_base(spec))
    except SpecError as err:
        raise CompressError(f"the spec with fewer heads does not check:\n{err.render()}") from None


def _width(width: int, name: str):
    return lambda call: _set_width(call, width, name)


def _set_keyword(call: str, key: str, value: int, name: str) -> str:
    """`sdpa(q, k, v, heads=n_head, causal=true)` -> `sdpa(q, k, v, heads=2, causal=true)`."""
    m = re.search(rf"\b{key}\s*=\s*", call)
    if m is None:
        raise CompressError(f"cannot write the pruned `{name}` back: its call `{call}` does not "
                            f"name `{key}=`", f"write {key}=... in the spec")
    return call[:m.end()] + str(value) + call[arg_end(call, m.end()):]
