"""Hover: the output shape and parameter count of the layer under the cursor, from the checked IR.

Every node of the IR keeps the span it came from: a layer (Leaf), a list (Seq), a block instance
(ModuleDef, spanning its definition) and each op of a forward pass (a functional `relu(h + s)`,
a block call). The innermost node containing the cursor wins; on a line with no node under the
cursor, the nearest one starting on that line. A block used several times has one node per
instance at the same span: each distinct shape set is shown.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Iterator

from nnspec.ir import Child, Leaf, ModuleDef, Op, Seq
from nnspec.lang.diagnostics import Span
from nnspec.layers.base import numel
from nnspec.lsp.analysis import Analysis
from nnspec.lsp.positions import contains, extent

MAX_SHAPE_SETS = 12  # a block used 40 times with 40 shapes: the first ones, then a count

Node = Child | Op


def hover_markdown(analysis: Analysis, line: int, col: int,
                   others: Iterable[Analysis] = ()) -> str | None:
    """Markdown for the node at the 1-based (line, col) of the document, or None. The models of
    `others` (the other open documents) count too where they use this file: a file of blocks
    has no model of its own, but its blocks have shapes in the specs that include it."""
    nodes = [(span, node) for span, node in _nodes(analysis, others)
             if span.line <= line <= span.end_line]
    under = [(s, n) for s, n in nodes if contains(s, line, col)]
    starting = [(s, n) for s, n in nodes if s.line == line]
    if any(s.line == line for s, _ in under):  # the innermost of those under the cursor
        under = [(s, n) for s, n in under if s.line == line]
    elif starting:  # on a layer's name (`conv1:`) or between stages: the nearest on the line
        near = min(abs(s.col - col) for s, _ in starting)
        under = [(s, n) for s, n in starting if abs(s.col - col) == near]
    if not under:
        return None
    # else on a continuation line, or a line of a block's own (`in x`): what encloses it
    best = min(extent(s) for s, _ in under)
    chosen = [(s, n) for s, n in under if extent(s) == best]
    first = chosen[0][0]
    texts = list(dict.fromkeys(_describe(n) for s, n in chosen if _same(s, first)))
    return _render(texts)


def _same(a: Span, b: Span) -> bool:
    return (a.line, a.col, a.end_line, a.end_col) == (b.line, b.col, b.end_line, b.end_col)


def _render(texts: list[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    shown = texts[:MAX_SHAPE_SETS]
    more = len(texts) - len(shown)
    head = f"{len(texts)} shape sets (one line per distinct use):\n\n"
    return head + "\n".join(f"- {t}" for t in shown) + (f"\n- ... and {more} more" if more else "")


def _nodes(analysis: Analysis, others: Iterable[Analysis]) -> Iterator[tuple[Span, Node]]:
    """Every IR node that came from this document, in its checked models and in those of
    `others` that include it."""
    yield from _walk(analysis.models, lambda name: name == analysis.name)
    if analysis.path is None:
        return
    for other in others:
        if other is not analysis:
            # spans of included files carry their display path: resolve each name once
            yield from _walk(other.models, functools.lru_cache(maxsize=None)(
                lambda name, other=other: name != other.name
                and Path(name).resolve() == analysis.path))


def _walk(models: list[ModuleDef], here) -> Iterator[tuple[Span, Node]]:
    seen: set[int] = set()
    stack: list[Node] = list(reversed(models))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if here(node.span.source.name):
            yield node.span, node
        # pushed in reverse, so instances are described in the order the model uses them
        if isinstance(node, Seq):
            stack.extend(reversed(node.items))
        elif isinstance(node, ModuleDef):
            stack.extend(reversed([c for _, c in node.children] + list(node.ops)))


def _describe(node: Node) -> str:
    if isinstance(node, Op):
        if node.target is not None:
            return _describe(node.target)
        kind = node.layer.kind if node.layer is not None else "op"
        ins, outs = [v.type for v in node.args], [v.type for v in node.outs]
        return f"**{kind}** {_types(ins)} → {_types(outs)}"
    if isinstance(node, Leaf):
        outs = node.layer.infer(node.ins)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return f"**{node.kind}** {_types(node.ins)} → {_types(outs)} · {_params(node)}"
    if isinstance(node, Seq):
        outs = node.outs or ([node.out] if node.out is not None else [])
        names = list(dict.fromkeys(_label(item) for item in node.items))
        what = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (f"**list of {len(node.items)}** ({what}) {_types(node.ins)} → {_types(outs)} · "
                f"{_params(node)}")
    outs = [v.type for v in node.outputs]
    return (f"**{node.signature}** {_types(v.type for v in node.inputs)} → {_types(outs)} · "
            f"{_params(node)}")


def _label(node: Child) -> str:
    if isinstance(node, Leaf):
        return node.kind
    return node.signature if isinstance(node, ModuleDef) else f"list of {len(node.items)}"


def _types(types) -> str:
    return ", ".join(f"`{t}`" for t in types) or "`()`"


def _params(node: Child) -> str:
    n = count_params(node)
    return f"{n:,} parameter{'s' if n != 1 else ''}"


def count_params(node: Child) -> int:
    """The parameters a node holds: every layer in it counted once (a layer the spec applies
    again by name shares its weights)."""
    total, seen = 0, set()
    stack: list[Child] = [node]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        if isinstance(c, Leaf):
            total += sum(numel(shape) for shape in c.layer.params(c.ins).values())
        elif isinstance(c, Seq):
            stack.extend(c.items)
        else:
            stack.extend(ch for _, ch in c.children)
    return total

