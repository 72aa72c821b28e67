"""The model's attentions, found in the IR, and the compile-time check of `heads(...)` pruning.

An attention is one `sdpa(q, k, v, heads=H)` op. It is named by the dotted path of the module
whose forward runs it (`transformer.h.0.attn`), so `on=["transformer.h.*.attn"]` picks them the
way state_dict names pick layers. Its heads can be pruned when, inside that same block:

    q, k, v   come from linear layers: one fused linear cut by `split(D)` (GPT-2's c_attn) or
              three linears (BERT's query/key/value), each read by nothing else;
    the output of sdpa goes straight into one linear (the output projection, c_proj).

Head h of q (and of k, v) is rows h*hd .. (h+1)*hd of its projection (hd = D / H), and the
columns h*hd .. (h+1)*hd of the output projection read it, so removing a head removes those rows
and columns; the head width hd stays. Torch-free.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from nnspec.lang.diagnostics import Reporter, Span, did_you_mean
from nnspec.ir import Leaf, ModuleDef, Op, Seq
from nnspec.compress.checked import Located, Prune, Target, model_layers

# kinds whose heads cannot be pruned: nn.MultiheadAttention keeps its inner width at embed_dim
FIXED_WIDTH_KINDS = ("multihead_attention", "transformer_encoder_layer",
                     "transformer_decoder_layer")


@dataclass(frozen=True)
class Projection:
    """Where q, k or v comes from: rows offset .. offset + D of the linear `layer`."""

    layer: str
    offset: int
    span: Span


@dataclass(frozen=True)
class Attention:
    """One sdpa op of one module instance, and the layers its heads live in."""

    name: str
    heads: int
    head_dim: int
    span: Span                      # the sdpa call
    q: Projection | None = None
    k: Projection | None = None
    v: Projection | None = None
    out: str = ""                   # the output projection
    split: Span | None = None       # the split of a fused q/k/v projection
    problem: str | None = None      # why its heads cannot be pruned

    @property
    def fused(self) -> bool:
        return self.split is not None

    def kept(self, amount: float) -> int:
        """Heads left after removing `amount` of them (rounded)."""
        return int(round(self.heads * (1 - amount)))


def find_attentions(ir: ModuleDef) -> list[Attention]:
    """Every sdpa op of the model, once per module instance, in definition order."""
    out: list[Attention] = []
    tied: set[int] = set()   # a tied weight's layer, by identity: a root's tie may reach deep

    def ties(child) -> None:
        if isinstance(child, Seq):
            for item in child.items:
                ties(item)
        elif isinstance(child, ModuleDef):
            tied.update(id(leaf) for leaf, *_ in child.ties)
            for _, c in child.children:
                ties(c)

    def walk(child, prefix: str) -> None:
        if isinstance(child, Seq):
            for i, item in enumerate(child.items):
                walk(item, f"{prefix}.{child.item_name(i)}" if prefix else child.item_name(i))
        elif isinstance(child, ModuleDef):
            for op in child.ops:
                if op.target is None and op.layer is not None and op.layer.kind == "sdpa":
                    out.append(_attention(child, op, prefix, tied))
            for name, c in child.children:
                if name is not None:
                    walk(c, f"{prefix}.{name}" if prefix else name)

    ties(ir)
    walk(ir, "")
    return out


def _attention(module: ModuleDef, op: Op, prefix: str, tied: set[int]) -> Attention:
    heads = op.layer.heads
    width = op.args[0].type.shape[-1]
    base = Attention(prefix or "<model>", heads, width // heads, op.span)
    if op.layer.kv_heads not in (None, heads):
        return _with(base, problem="grouped-query heads (kv_heads=) cannot be pruned yet")
    if any(len(v.type.shape) == 3 for v in list(op.args[3:]) + list(op.kwargs.values())):
        return _with(base, problem="a per-head bias cannot be pruned with the heads yet")
    producer = {id(v): o for o in module.ops for v in o.outs}
    uses: dict[int, list[Op]] = {}
    for o in module.ops:
        for v in list(o.args) + list(o.kwargs.values()):
            uses.setdefault(id(v), []).append(o)
    projections, split = [], None
    for value in op.args[:3]:   # a padding mask (4th) is shared by all heads
        src = producer.get(id(value))
        if len(uses.get(id(value), [])) != 1 or any(value is v for v in module.outputs):
            return _with(base, problem="its q, k and v must feed only sdpa")
        if src is not None and src.target is None and src.layer.kind == "split":
            sizes = src.layer.split_size_or_sections
            last = len(src.args[0].type.shape)
            if not isinstance(sizes, int) or sizes != width or src.layer.dim not in (last, -1) \
                    or len(src.outs) != 3:
                return _with(base, problem="a fused q/k/v projection must be cut with "
                             "split(D, dim=-1) into three pieces")
            index = next(i for i, v in enumerate(src.outs) if v is value)
            fused = producer.get(id(src.args[0]))
            if fused is None or len(uses.get(id(src.args[0]), [])) != 1:
                return _with(base, problem="its fused q/k/v projection must feed only the split")
            split, offset, src = src.span, index * width, fused
        else:
            offset = 0
            if src is not None and len(uses.get(id(src.outs[0]), [])) != 1:
                return _with(base, problem="its q, k and v projections must feed only sdpa")
        name = _linear_name(module, src, tied)
        if name is None:
            return _with(base, problem="q, k and v must come from named linear layers of the "
                         "same block")
        projections.append(Projection(_join(prefix, name), offset, src.target.span))
    consumers = uses.get(id(op.outs[0]), [])
    out = _linear_name(module, consumers[0], tied) if len(consumers) == 1 else None
    if out is None or any(op.outs[0] is v for v in module.outputs):
        return _with(base, problem="the output of sdpa must go straight into one named linear "
                     "layer of the same block (the output projection)")
    if split is not None and len({p.layer for p in projections}) != 1:
        return _with(base, problem="q, k and v must come from one fused projection or three")
    if split is None and len({p.layer for p in projections}) != 3:
        return _with(base, problem="q, k and v must come from three separate linear layers")
    return Attention(base.name, heads, width // heads, op.span, *projections,
                     out=_join(prefix, out), split=split)


def _linear_name(module: ModuleDef, op: Op | None, tied: set[int]) -> str | None:
    """The name of the linear layer `op` calls, when it is used by that op alone and not tied."""
    if op is None or not isinstance(op.target, Leaf) or op.target.kind != "linear":
        return None
    if sum(1 for o in module.ops if o.target is op.target) != 1 or \
            id(op.target) in tied:
        return None
    return next((n for n, c in module.children if c is op.target), None)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _with(base: Attention, **changes) -> Attention:
    from dataclasses import replace

    return replace(base, **changes)


# ---- the check of heads(...) --------------------------------------------------------------------

def check_heads(values: dict, ir: ModuleDef, loc: Located, index: int,
                reporter: Reporter) -> Prune | None:
    """The heads directive with the attentions it prunes; None after reporting a problem."""
    attentions = find_attentions(ir)
    target = Target(values["on"] or ("sdpa",), values["skip"])
    layers = model_layers(ir)
    for arg, patterns in (("on", values["on"] or ()), ("skip", target.skip)):
        for p in patterns:
            if any(_matches(p, a) for a in attentions):
                continue
            span = loc.span("prune", index, arg, item=p)
            fixed = sorted({la.kind for la in layers if la.kind in FIXED_WIDTH_KINDS
                            and (p == la.kind or fnmatch.fnmatchcase(la.name, p))})
            if fixed:
                reporter.error("E0724", f"heads pruning cannot run on `{p}` (it matches only "
                               f"{', '.join(fixed)} layers)", span,
                               "nn.MultiheadAttention keeps its inner width at embed_dim; write "
                               "the attention as linear projections and sdpa (specs/blocks/gpt.nn)")
            else:
                names = [a.name for a in attentions]
                hint = did_you_mean(p, names) or (
                    f"the attentions are {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                    if names else "the model has no sdpa attention")
                reporter.error("E0723", f"`{p}` matches no attention of the model", span, hint)
            return None
    chosen = [a for a in attentions if any(_matches(p, a) for p in target.on)
              and not any(_matches(p, a) for p in target.skip)]
    amount = values["amount"]
    for a in chosen:
        where = loc.span("prune", index, "on", item=_first(target.on, a))
        if a.problem is not None:
            reporter.error("E0724", f"cannot prune the heads of `{a.name}`: {a.problem}", where,
                           f"add \"{a.name}\" to skip=[...], or write the attention as in "
                           "specs/blocks/gpt.nn")
            return None
        kept = a.kept(amount)
        if kept in (0, a.heads):
            what = "all" if kept == 0 else "none"
            reporter.error("E0722", f"heads({amount}) would remove {what} of the {a.heads} heads "
                           f"of `{a.name}`", loc.span("prune", index, "amount", 0),
                           f"keep between 1 and {a.heads - 1} of its heads" if a.heads > 1
                           else f"it has one head: add \"{a.name}\" to skip=[...]")
            return None
    if not chosen:
        reporter.error("E0723", "heads pruning selects no attention (all are skipped)",
                       loc.span("prune", index, "skip"), "remove some patterns from skip=[...]")
        return None
    return Prune("heads", float(amount), target, norm=float(values["norm"]),
                 layers=tuple(a.name for a in chosen))


def check_written_once(ir: ModuleDef, heads: list[tuple[int, Prune]], loc: Located,
                       reporter: Reporter) -> bool:
    """Attentions written by one block must keep the same number of heads of the same width, as
    the smaller spec says it once: a block used with different head counts, or pruned in one
    place and skipped in another, cannot be written back. `heads`: (index, directive)."""
    by_name: dict[str, tuple[int, Prune]] = {}
    for i, d in heads:
        for name in d.layers:
            if name in by_name:
                reporter.error("E0722", f"`{name}` is pruned by two heads directives",
                               loc.span("prune", i), "give each attention one heads(...)")
                return False
            by_name[name] = (i, d)
    written: dict[tuple, tuple[int, int, Attention]] = {}
    for a in find_attentions(ir):
        i, d = by_name.get(a.name, (None, None))
        shape = (a.kept(d.amount) if d is not None else a.heads, a.head_dim)
        key = (id(a.span.source), a.span.line, a.span.col)
        first = written.setdefault(key, (*shape, a, i))
        if first[:2] != shape:
            other = first[2]
            at = i if i is not None else first[3]
            reporter.error("E0724", f"heads pruning would leave `{other.name}` with {first[0]} "
                           f"heads of width {first[1]} and `{a.name}` with {shape[0]} of width "
                           f"{shape[1]}, but one block writes both", loc.span("prune", at),
                           "prune every use of the block alike (or skip them all), or write "
                           "the attentions as separate blocks",
                           [("the attention both use is written here", a.span)])
            return False
    return True


def _matches(pattern: str, a: Attention) -> bool:
    return pattern == "sdpa" or fnmatch.fnmatchcase(a.name, pattern)


def _first(patterns, a: Attention) -> str | None:
    return next((p for p in patterns if _matches(p, a)), None)
