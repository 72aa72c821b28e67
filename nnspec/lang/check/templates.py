"""Templates: layers named or called in a spec but not yet applied to a tensor.

`conv2d(64, 3)`, a block call, a list of layers, `layer * 3`, `name: layer` and a reference to an
existing child are all templates. They carry their arguments (and any tensors already given to
them) until the flow applies them, which is when the elaborator instantiates them into IR modules.
This module only declares them and measures them; it evaluates and builds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Span
from nnspec.ir import Leaf, ModuleDef, Value
from nnspec.layers import Layer


@dataclass(eq=False)
class Template:
    """A layer not yet applied: a layer kind or block with arguments, a list, or a repeat."""

    span: Span
    bound: list[Value] = field(default_factory=list)        # tensors given positionally
    bound_kw: dict[str, Value] = field(default_factory=dict)  # tensors given by keyword


@dataclass(eq=False)
class KindT(Template):
    cls: type[Layer] = None  # type: ignore[assignment]
    pos: list[tuple[Any, Span]] = field(default_factory=list)
    kw: dict[str, tuple[Any, Span]] = field(default_factory=dict)
    tie: tuple["ModRef", Span] | None = None


@dataclass(eq=False)
class BlockT(Template):
    defn: S.Definition = None  # type: ignore[assignment]
    pos: list[tuple[Any, Span]] = field(default_factory=list)
    kw: dict[str, tuple[Any, Span]] = field(default_factory=dict)


@dataclass(eq=False)
class SeqT(Template):
    items: list[Template] = field(default_factory=list)


@dataclass(eq=False)
class RepeatT(Template):
    item: Template = None  # type: ignore[assignment]
    count: int = 1


@dataclass(eq=False)
class NamedT(Template):
    name: str = ""
    name_span: Span = None  # type: ignore[assignment]
    item: Template = None  # type: ignore[assignment]


@dataclass(eq=False)
class ModRef(Template):
    """An existing child module, by name: applying it again shares its weights."""

    path: list[str] = field(default_factory=list)
    child: Any = None
    scope: Any = None  # the values.Scope whose module holds the child


def required_inputs(t: Template) -> int:
    """How many tensors a template needs before it can be applied."""
    if isinstance(t, NamedT):
        return required_inputs(t.item)
    if isinstance(t, KindT):
        return sum(1 for n in t.cls.inputs if not n.endswith("?"))
    if isinstance(t, BlockT):
        if t.defn.alias is not None:
            return 1
        return sum(len(st.decls) for st in t.defn.body if isinstance(st, S.Inputs))
    if isinstance(t, ModRef):
        child = t.child
        if isinstance(child, Leaf):
            return sum(1 for n in type(child.layer).inputs if not n.endswith("?"))
        return len(child.inputs) if isinstance(child, ModuleDef) else 1
    return 1


def unrolled_size(tmpl) -> int:
    """How many layers a template unrolls to (a block counts as one)."""
    if isinstance(tmpl, RepeatT):
        return tmpl.count * unrolled_size(tmpl.item)
    if isinstance(tmpl, SeqT):
        return sum(unrolled_size(i) for i in tmpl.items)
    if isinstance(tmpl, NamedT):
        return unrolled_size(tmpl.item)
    return 1


def satisfied(t: Template) -> bool:
    """Whether a template's bound tensors cover every input it requires."""
    return len(t.bound) >= required_inputs(t) if (t.bound or t.bound_kw) else False
