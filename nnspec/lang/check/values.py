"""The values elaboration computes with, and how a diagnostic names them.

A spec's expressions evaluate to plain values (numbers, strings, booleans, tuples of them), tensor
`Value`s (a type, never data), templates (see templates.py) and builtin functions. This module
holds what every part of the checker shares about them: the limits that keep a hostile spec
cheap to refuse, the scope a definition's body runs in, the marker for a failed value, and the
words a diagnostic uses for a value (`the layer kind `conv2d``) or a field's type (`a positive
integer or a list of positive integers`).
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from nnspec.lang.diagnostics import Span
from nnspec.ir import ModuleDef, Value
from nnspec.layers import Layer
from nnspec.lang.check.templates import BlockT, KindT, ModRef, SeqT, Template

MAX_REPEAT = 10_000
MAX_OPS = 200_000
MAX_DEPTH = 64
MAX_INT = 2 ** 62
DTYPES = {"float": "float", "long": "long", "int": "long", "bool": "bool"}


class Abort(Exception):
    """Unwinds one statement after its error has been reported (or silently for a poisoned value)."""


class _Poison:
    """Stands for a value whose statement failed, so later uses do not report again."""


POISON = _Poison()


@dataclass(eq=False)
class Builtin:
    name: str


# the builtins on numbers (arithmetic.py), and those on a tensor's type (functions.py)
NUMERIC_BUILTINS = {"min", "max", "int", "float", "bool", "abs", "round", "floor", "ceil", "log",
                    "pow"}
BUILTINS = {"channels", "size", "ndim"} | NUMERIC_BUILTINS


@dataclass(eq=False)
class Scope:
    module: ModuleDef
    params: dict[str, Any]
    locals: dict[str, Any] = field(default_factory=dict)    # constants and tensors by name
    layers: dict[str, Any] = field(default_factory=dict)    # named children by name
    cursor: Any = None
    read: set[int] = field(default_factory=set)              # ids of tensors read by name
    instantiated_at: list[tuple[str, Span]] = field(default_factory=list)
    numbered: int = 0  # items of unnamed lists applied in this body, named by position
    # layers declared with `const name = layer`: how many children the body had at the
    # declaration, where the layer takes its place once it is built (see Elaborator.declare)
    declared: dict[str, tuple[int, Span]] = field(default_factory=dict)


def is_plain(v) -> bool:
    if isinstance(v, tuple):
        return all(is_plain(x) for x in v)
    return isinstance(v, (int, float, str, bool))


def from_python(v):
    """A value given from Python (`nnspec.load(..., widths=[16, 24])`) as the spec holds it: lists
    are tuples, as a list written in the spec is, so indexing and block-call caching see one type."""
    if isinstance(v, (list, tuple)):
        return tuple(from_python(x) for x in v)
    return v


def freeze(params: dict) -> tuple:
    return tuple(sorted((k, (type(v).__name__, v)) for k, v in params.items()))


def signature(name: str, params: dict) -> str:
    return f"{name}({', '.join(f'{k}={show(v)}' for k, v in params.items())})"


def show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (KindT, BlockT)) and not v.bound and not v.bound_kw:
        # a layer given as an argument, as the spec writes it: `act=gelu`, `norm=layernorm(eps=...)`
        name = v.cls.kind if isinstance(v, KindT) else v.defn.name
        args = [show(x) for x, _ in v.pos] + [f"{k}={show(x)}" for k, (x, _) in v.kw.items()]
        return f"{name}({', '.join(args)})" if args else name
    if isinstance(v, SeqT) and not v.bound and not v.bound_kw:
        return "[" + ", ".join(show(item) for item in v.items) + "]"
    return describe(v)


def describe(v) -> str:
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, ModRef):
        return f"the layer `{'.'.join(v.path)}`"
    if isinstance(v, KindT):
        return f"the layer kind `{v.cls.kind}`"
    if isinstance(v, BlockT):
        return f"the block `{v.defn.name}`"
    if isinstance(v, Template):
        return "a layer"
    if isinstance(v, Builtin):
        return f"the function `{v.name}`"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, tuple):
        return f"a list of {len(v)}"
    return "a value"


def type_hint(cls: type[Layer], fname: str) -> str | None:
    f = cls.model_fields.get(fname)
    if f is None:
        return None
    ann = type_words(f.annotation, f.metadata)
    desc = f": {f.description}" if f.description else ""
    return f"`{fname}` is {ann}{desc}"


def type_words(ann, metadata=()) -> str:
    """A field's type in a user's words: `a positive integer or a list of positive integers`."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return type_words(args[0], list(metadata) + list(ann.__metadata__))
    if origin in (typing.Union, types.UnionType):
        words = [type_words(a, metadata) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(words))
    if origin is typing.Literal:
        return ("one of " if len(args) > 1 else "") + ", ".join(show(a) for a in args)
    if origin is tuple:
        item = type_words(args[0]) if args else "a value"
        for old, new in (("a ", ""), ("an ", ""), ("integer", "integers"), ("number", "numbers")):
            item = item.replace(old, new)
        return "a list of " + item
    if ann is bool:
        return "true or false"
    if ann not in (int, float):
        return getattr(ann, "__name__", str(ann))
    noun = "integer" if ann is int else "number"
    low = {type(m).__name__: m for m in metadata}
    if "Ge" in low and "Le" in low:
        return f"a number from {low['Ge'].ge} to {low['Le'].le}"
    if "Gt" in low and low["Gt"].gt == 0:
        return f"a positive {noun}"
    if "Ge" in low and low["Ge"].ge == 0:
        return f"a non-negative {noun}"
    return f"an {noun}" if noun == "integer" else f"a {noun}"
