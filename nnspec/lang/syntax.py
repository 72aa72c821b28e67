"""Syntax nodes: one frozen dataclass per construct of the .nn language, each with its span."""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.lang.diagnostics import Span


@dataclass(frozen=True)
class Node:
    span: Span = field(repr=False, compare=False)


# ---- expressions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Literal(Node):
    value: int | float | str | bool


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class TupleExpr(Node):
    """`(a, b)`: several values as one, e.g. the tensors that flow into a list together."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Arg(Node):
    name: str | None  # None for a positional argument
    value: Node


@dataclass(frozen=True)
class Call(Node):
    func: Node
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Index(Node):
    target: Node
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Attr(Node):
    target: Node
    name: str


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % @ ** == != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class IfElse(Node):
    """`then if cond else other`: only the branch the condition picks is evaluated."""

    then: Node
    cond: Node
    other: Node


@dataclass(frozen=True)
class Unary(Node):
    op: str  # - not
    operand: Node


@dataclass(frozen=True)
class Pipe(Node):
    """`left -> stage`: the tensor(s) of `left` flow into `stage`."""

    left: Node
    stage: Node


@dataclass(frozen=True)
class When(Node):
    """`stage when cond`: the stage is present only when cond holds (else it passes through)."""

    item: Node
    cond: Node


@dataclass(frozen=True)
class FString(Node):
    """`f"denselayer{i + 1}"`: text and `{expression}` holes, joined when evaluated."""

    parts: tuple[str | Node, ...]


@dataclass(frozen=True)
class Named(Node):
    """`name: layer`: the layer becomes the module attribute `name`. A quoted name
    (`"block1-0": ...`) or an f-string name (`f"layer{i}": ...`) is held in `quoted`."""

    name: str
    name_span: Span = field(repr=False, compare=False)
    value: Node = None  # type: ignore[assignment]
    quoted: Literal | FString | None = None


@dataclass(frozen=True)
class Splice(Node):
    """`*items` inside a list display: the items of a list, in place."""

    value: Node


@dataclass(frozen=True)
class Comprehension(Node):
    """`[item for i in range(n)]`: the item once per value, with the loop names bound."""

    item: Node
    targets: tuple[str, ...]
    target_span: Span = field(repr=False, compare=False)
    iter: Node = None  # type: ignore[assignment]


# ---- statements ----------------------------------------------------------------------------
@dataclass(frozen=True)
class InputDecl(Node):
    name: str
    type: Node | None  # `float[3, 32, 32]`; required in a model, absent in a block


@dataclass(frozen=True)
class Inputs(Node):
    decls: tuple[InputDecl, ...]


@dataclass(frozen=True)
class Outputs(Node):
    values: tuple[Node, ...]


@dataclass(frozen=True)
class Assign(Node):
    names: tuple[str, ...]
    value: Node


@dataclass(frozen=True)
class ExprStmt(Node):
    value: Node


@dataclass(frozen=True)
class Const(Node):
    name: str
    value: Node


# ---- top level -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Node | None


@dataclass(frozen=True)
class Definition(Node):
    """A `model` or a `block`: a parameterized network body."""

    is_model: bool
    name: str
    params: tuple[Param, ...]
    body: tuple[Node, ...]
    alias: Node | None = None  # `block Name(params) = layer-expression`: expands in place


@dataclass(frozen=True)
class Setting(Node):
    """`key = value` inside a train/parallel section."""

    key: str
    key_span: Span = field(repr=False, compare=False)
    value: Node = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Section(Node):
    """`train { ... }` or `parallel { ... }`: how the model is trained and placed."""

    name: str
    name_span: Span = field(repr=False, compare=False)
    settings: tuple[Setting, ...] = ()


@dataclass(frozen=True)
class Use(Node):
    path: str


@dataclass(frozen=True)
class File(Node):
    items: tuple[Node, ...]
