"""What a name can see: names used before the statement that defines them, and `tie=`'s scope.

A definition's statements run in order, so a layer exists only after its statement: `Head(wte)`
written above `wte: embedding(...)` is an unknown name there. Its diagnostic says where the name
is defined, as Python's "referenced before assignment" would, instead of suggesting a layer kind.
"""
from __future__ import annotations

import dataclasses

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Span

# the scope rule of `tie=`, for the help of each diagnostic that refuses one
TIE_SCOPE = ("`tie=` names a layer defined before it in the same model or block (`tie=wte`, "
             "`tie=blocks.0.fc`), or a block parameter that the caller passes a layer to: "
             "`Head(vocab, wte)` with `block Head(vocab, embed)` and `tie=embed` inside")


def defined_later(defn: S.Definition | None, name: str, used: Span) -> Span | None:
    """Where `defn` defines `name` (a named layer or an assigned tensor) after `used`, if it does."""
    if defn is None:
        return None
    for node in _walk(defn.body):
        if isinstance(node, S.Named) and node.name == name:
            at = node.name_span
        elif isinstance(node, S.Assign) and name in node.names:
            at = node.span
        else:
            continue
        if at.source is used.source and (at.line, at.col) > (used.line, used.col):
            return at
    return None


def _walk(nodes):
    """Every syntax node under `nodes`, without recursion (a body may nest deeply)."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, (tuple, list)):
            stack.extend(reversed(node))
        elif isinstance(node, S.Node):
            yield node
            stack.extend(reversed([getattr(node, f.name) for f in dataclasses.fields(node)]))
