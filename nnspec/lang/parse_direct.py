"""Parse straight to syntax nodes, without building Lark's tree first: the fast path of `parse`.

Lark's tree costs most of the parse: `propagate_positions` wraps every reduction (about four a
token, most of them the one-child precedence rules `?expr` ... `?atom`), and the Transformer walks
the whole tree again afterwards. Here the parser's own reductions call nnspec.lang.to_syntax's
methods as they happen, and each value's extent (its first and last character, brackets and
inlined rules included, as propagate_positions computes it) is kept in a side table, so every
node gets the span the tree path would have given it.

Anything unusual (a syntax error, a bad literal, an f-string error, a too-deep tree) returns None,
and `parse` takes the tree path, which reports it exactly as before: the diagnostics have one
implementation. tests/lang/test_parse_direct.py checks that both paths give equal syntax trees.
"""
from __future__ import annotations

import copy
import threading
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.parse_tree_builder import ParseTreeBuilder

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Source
from nnspec.lang.gc_pause import pauses_collection
from nnspec.lang.to_syntax import ToSyntax


class _Unsupported(Exception):
    """A reduction this path does not handle: take the tree path."""


class _Meta:
    """The positions a ToSyntax method reads from a Lark meta."""

    __slots__ = ("line", "column", "end_line", "end_column")
    empty = False

    def __init__(self, line, column, end_line, end_column):
        self.line, self.column, self.end_line, self.end_column = line, column, end_line, end_column


class _EmptyMeta:
    empty = True


_EMPTY = _EmptyMeta()


class _Run:
    """One parse: the transformer and the side table of extents and tree heights.

    The table maps id(value) -> (value, start, end, height); holding the value keeps its id from
    being reused while the parse runs. `start` and `end` are (line, column) pairs, or None for a
    value that covers no text (an empty statement list). `height` is the depth check of
    parse.py's _check_nesting measured bottom-up: the tree path refuses a tree whose nodes nest
    deeper than MAX_NESTING (an operator chain counting once per operator)."""

    def __init__(self, source: Source, limit: int):
        self.transformer = ToSyntax(source)
        self.table: dict[int, tuple] = {}
        self.methods: dict[str, object] = {}
        self.limit = limit

    def method(self, name: str):
        fn = self.methods.get(name)
        if fn is None:
            bound = getattr(self.transformer, name, None)
            if bound is None or name.startswith("_"):
                raise _Unsupported(name)
            fn = self.methods[name] = getattr(bound, "base_func", bound)  # past lark's v_args
        return fn

    def first_last(self, children: list):
        """(start, end) of the first and last children that cover text, as propagate_positions
        takes them (a Token's own position; another value's extent, widest container)."""
        return self._edge(children, 1), self._edge(reversed(children), 2)

    def _edge(self, children, which: int):
        """The start (which=1) or end (2) of the first child in `children` that covers text."""
        table = self.table
        for c in children:
            if isinstance(c, Token):
                return (c.line, c.column) if which == 1 else (c.end_line, c.end_column)
            entry = table.get(id(c))
            if entry is not None and entry[which] is not None:
                return entry[which]
        return None

    def height(self, children) -> int:
        table, best = self.table, -1
        for c in children:
            entry = table.get(id(c))
            if entry is not None and entry[3] >= best:
                best = entry[3]
        return best + 1 if best >= 0 else 0

    def reduce(self, build, children: list):
        """One reduction: Lark's plain tree-building callback `build` for the rule, then the
        ToSyntax method for the node it names."""
        res = build(children)
        table = self.table
        if type(res) is Tree:
            start, end = self.first_last(children)
            data, kids = res.data, res.children
            if data[0] == "_":  # an inlined rule: its children go into the parent's
                table[id(res)] = (res, start, end, -1)
                return res
            meta = _EMPTY if start is None else _Meta(start[0], start[1], end[0], end[1])
            node = self.method(data)(meta, kids)
            height = self.height(kids) + (len(kids) // 2 if data == "operators" else 0)
            if height > self.limit:
                raise _Unsupported("nested too deeply")
            table[id(node)] = (node, start, end, height)
            return node
        if len(children) > 1 and not isinstance(res, Token):
            # a `?rule` passed its one child up from among brackets: widen its extent
            start, end = self.first_last(children)
            entry = table.get(id(res))
            if entry is not None and start is not None:
                table[id(res)] = (res, start, end, entry[3])
        return res


@lru_cache(maxsize=2)
def _frontend(lark: Lark):
    """A copy of `lark`'s parsing frontend (same tables, lexer and post-lexer) whose reductions
    call the running parse's `_Run.reduce`; None where this Lark's internals are not as expected."""
    try:
        inner = lark.parser.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        plain = ParseTreeBuilder(lark.rules, Tree, False, False,
                                 lark.options.maybe_placeholders).create_callback(None)
        if not isinstance(inner.callbacks, dict) or not set(plain) <= set(inner.callbacks):
            return None
    except (AttributeError, TypeError):
        return None
    holder = threading.local()  # the parse running in this thread
    callbacks = dict(inner.callbacks)  # keeps the terminals' callbacks, if any
    for rule, build in plain.items():
        callbacks[rule] = _first if _passes_up(rule) else _dispatch(holder, build)
    fast_inner = copy.copy(inner)
    fast_inner.callbacks = callbacks
    fast_lalr = copy.copy(lark.parser.parser)
    fast_lalr.parser = fast_inner
    frontend = copy.copy(lark.parser)
    frontend.parser = fast_lalr
    return frontend, holder


def _passes_up(rule) -> bool:
    """A `?rule` alternative of one rule and nothing else (`?expr: stage`, most of the ladder of
    precedence rules): its value is its child's, extent and all."""
    (sym,) = rule.expansion if len(rule.expansion) == 1 else (None,)
    return (bool(rule.options.expand1) and not rule.alias and sym is not None and not sym.is_term
            and not sym.name.startswith("_"))


def _first(children):
    return children[0]


def _dispatch(holder, build):
    def reduce(children):
        return holder.run.reduce(build, children)
    return reduce


@pauses_collection
def parse_direct(lark: Lark, text: str, source: Source, limit: int) -> S.File | None:
    """The syntax tree of `text` parsed by `lark` without its tree, or None when the text needs
    the tree path (any error; a tree nested deeper than `limit`)."""
    made = _frontend(lark)
    if made is None:
        return None
    frontend, holder = made
    run = _Run(source, limit)
    previous, holder.run = getattr(holder, "run", None), run
    try:
        result = frontend.parse(text)
    except Exception:  # noqa: BLE001 - every failure is reported by the tree path
        return None
    finally:
        holder.run = previous
    return result if isinstance(result, S.File) else None
