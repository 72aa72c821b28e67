"""Where the comments of a .nn file go when `nnspec fmt` prints it from its syntax nodes.

The syntax has no comments (the parser ignores them, so checking pays nothing for them): they are
found in the text here and attached by position to a "slot" of the innermost container around
them. Containers and their slots: the file (top-level items), a model or block body
(statements), a train/parallel/... section (settings), parameters, a call (arguments), a list or
tuple (items) and a flow (its head and stages). An own-line comment goes before the slot that
follows it, a comment at the end of a line after the slot that ends there; one after a
container's last slot goes before its closing bracket, one after the `{` of a body stays there. A comment inside a slot that is not itself
a container goes before that slot (or after it, if it trailed a line), so no comment is lost.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field, fields

from nnspec.lang import syntax as S

# strings are skipped whole: a `#` inside one starts no comment
_STRINGS_AND_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*')
_NO_CHILDREN = {"span", "name_span", "target_span", "key_span", "quoted"}


@dataclass
class Comment:
    line: int
    col: int
    text: str
    trailing: bool       # code stands before it on its line
    blank_before: bool   # the line above it is blank
    gap: int = 0         # the spaces between the code and a trailing comment


@dataclass
class _Container:
    key: int              # id of the node whose printer prints the slots
    start: tuple
    end: tuple
    slots: list
    children: list = field(default_factory=list)   # the containers directly inside, in order
    header: bool = False  # a model, block or section: `{` ends a header line


def scan_comments(text: str) -> list[Comment]:
    """Every comment of a source, in order."""
    lines = text.split("\n")
    out: list[Comment] = []
    line, pos = 1, 0
    for m in _STRINGS_AND_COMMENTS.finditer(text):
        if m.group()[0] != "#":
            continue
        line += text.count("\n", pos, m.start())
        pos = m.start()
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        before = lines[line - 1][:col - 1]
        out.append(Comment(line, col, m.group().rstrip(), bool(before.strip()),
                           line > 1 and not lines[line - 2].strip(),
                           len(before) - len(before.rstrip())))
    return out


def children(node: S.Node):
    for f in fields(node):
        if f.name in _NO_CHILDREN:
            continue
        value = getattr(node, f.name)
        if isinstance(value, S.Node):
            yield value
        elif isinstance(value, tuple):
            yield from (v for v in value if isinstance(v, S.Node))


def _start(span) -> tuple:
    return (span.line, span.col)


def _end(span) -> tuple:
    return (span.end_line, span.end_col)


class CommentMap:
    """The comments of one file, attached: `leading`, `trailing` (id(slot) -> comments),
    `ends` (id(container) -> comments), `marked` (ids of the nodes with a comment inside, which
    never print on one line) and `statement_of` (id(node) -> id of its statement-level slot)."""

    def __init__(self, tree: S.File, text: str):
        self.leading: dict[int, list[Comment]] = {}
        self.trailing: dict[int, list[Comment]] = {}
        self.ends: dict[int, list[Comment]] = {}
        self.heads: dict[int, list[Comment]] = {}    # id(definition) -> after its `{`
        self.marked: set[int] = set()
        self.parents: dict[int, S.Node | None] = {}
        self.statement_of: dict[int, int] = {}
        self.root = _Container(id(tree), (0, 0), (float("inf"), 0), list(tree.items))
        self._walk(tree)
        for c in scan_comments(text):
            self._attach(c)

    def _walk(self, tree: S.File) -> None:
        stack: list[tuple[S.Node, S.Node | None, int, _Container]] = [
            (tree, None, id(tree), self.root)]
        while stack:
            node, parent, statement, box = stack.pop()
            self.parents[id(node)] = parent
            self.statement_of[id(node)] = statement
            inner = self._register(node, parent, box)
            if isinstance(node, (S.File, S.Section)):
                stack.extend((c, node, id(c), inner) for c in children(node))
                continue
            body = {id(s) for s in node.body} if isinstance(node, S.Definition) else ()
            stack.extend((c, node, id(c) if id(c) in body else statement, inner)
                         for c in children(node))

    def _register(self, node: S.Node, parent, box: _Container) -> _Container:
        """Record the node as a container inside `box`, if it is one; the container its
        children are in."""
        span = node.span
        if isinstance(node, S.Definition):
            if node.alias is None:
                box = self._add(box, id(node), span, list(node.body))
                box.header = True
            if node.params:
                first, last = node.params[0].span, node.params[-1].span
                self._add(box, id(node.params), None, list(node.params), _start(first), _end(last))
            return box
        if isinstance(node, S.Section):
            box = self._add(box, id(node), span, list(node.settings))
            box.header = True
            return box
        if isinstance(node, (S.ListExpr, S.TupleExpr)):
            return self._add(box, id(node), span, list(node.items))
        if isinstance(node, S.Call):
            return self._add(box, id(node), span, list(node.args))
        if isinstance(node, S.Pipe) and not (isinstance(parent, S.Pipe) and parent.left is node):
            stages: list[S.Node] = []
            head: S.Node = node
            while isinstance(head, S.Pipe):
                stages.append(head.stage)
                head = head.left
            return self._add(box, id(node), span, [head] + stages[::-1])
        return box

    @staticmethod
    def _add(box: _Container, key: int, span, slots: list, start=None, end=None) -> _Container:
        new = _Container(key, start or _start(span), end or _end(span), slots)
        box.children.append(new)
        return new

    def _innermost(self, pos: tuple) -> _Container:
        box = self.root
        while True:
            kids = box.children
            if kids and not hasattr(box, "starts"):
                kids.sort(key=lambda k: k.start)
                box.starts = [k.start for k in kids]  # type: ignore[attr-defined]
            i = bisect_left(box.starts, pos) - 1 if kids else -1  # type: ignore[attr-defined]
            if i < 0 or not pos < kids[i].end:
                return box
            box = kids[i]

    def _attach(self, c: Comment) -> None:
        pos = (c.line, c.col)
        box = self._innermost(pos)
        where, key = self._place(c, pos, box)
        self.table(where).setdefault(key, []).append(c)
        if where == "end":
            self.marked.add(key)
        node = self.parents.get(key)
        while node is not None and id(node) not in self.marked:  # its ancestors are marked
            self.marked.add(id(node))
            node = self.parents.get(id(node))

    def table(self, where: str) -> dict[int, list[Comment]]:
        return {"lead": self.leading, "trail": self.trailing, "end": self.ends,
                "head": self.heads}[where]

    @staticmethod
    def _place(c: Comment, pos: tuple, box: _Container) -> tuple[str, int]:
        """Where in `box` comment `c` goes: ("lead" | "trail", id(slot)), ("end", box.key), or
        ("head", box.key) for one that ends the header line of a body."""
        slots = box.slots
        if box.header and c.trailing and (not slots or pos < _start(slots[0].span)):
            return "head", box.key
        if not hasattr(box, "slot_starts"):
            box.slot_starts = [_start(s.span) for s in slots]  # type: ignore[attr-defined]
        i = bisect_left(box.slot_starts, pos) - 1  # type: ignore[attr-defined]  # last before
        if i >= 0:
            s = slots[i]
            if _end(s.span) <= pos:
                if c.trailing and s.span.end_line == c.line:
                    return "trail", id(s)
            else:  # inside the slot
                return ("trail" if c.trailing else "lead"), id(s)
        if i + 1 < len(slots):
            return "lead", id(slots[i + 1])
        return "end", box.key
