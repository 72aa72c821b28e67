"""`nnspec fmt`: one canonical layout of a .nn file, printed from its syntax nodes.

The layout: two spaces a level, one statement a line, `k=v` in calls and `name = default` in
parameters and settings, at most one blank line kept where the user left one (and always one
between multi-line definitions), lines within WIDTH where the language lets them break (see
fmt_expr). Literals keep their written form (`1e-5`, `1_000`); parentheses are precedence's.

Comments are not in the syntax: they are found in the text here (the parser ignores them, so
checking pays nothing for this) and attached by position to the innermost "slot" around them: a
top-level item, a statement, a setting, a parameter, an argument, a list item or a stage of a
flow. An own-line comment goes before the slot that follows it, a comment at the end of a line
after the slot that ends there; a sequence holding one is then printed one item a line so that the
comment keeps its place. A comment found where no slot can carry it moves up to the statement
around it, so that no comment is ever lost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from nnspec.lang import syntax as S
from nnspec.lang.fmt_expr import INDENT, PIPE, ExprPrinter, Line, leading_sign, quote
from nnspec.lang.parse import parse

# strings are skipped whole: a `#` inside one starts no comment
_STRINGS_AND_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*')
_NO_CHILDREN = {"span", "name_span", "target_span", "key_span", "quoted"}
_END = (float("inf"), 0)


@dataclass
class Comment:
    line: int
    col: int
    text: str
    trailing: bool       # code stands before it on its line
    blank_before: bool   # the line above it is blank


@dataclass
class _Container:
    key: int              # id of the node whose printer prints the slots
    start: tuple
    end: tuple
    slots: list


def format_text(text: str, name: str = "<string>") -> str:
    """The canonical layout of one .nn source; raises SpecError (located) if it does not parse."""
    text = text[1:] if text.startswith("\ufeff") else text
    tree = parse(text, name)
    return _Formatter(tree, text).file(tree)


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
                           line > 1 and not lines[line - 2].strip()))
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


class _Formatter(ExprPrinter):
    def __init__(self, tree: S.File, text: str):
        super().__init__({tree.span.source: text.split("\n")}, {}, {}, {}, set())
        self.parents: dict[int, S.Node | None] = {}
        self.statement_of: dict[int, int] = {}   # id(node) -> id of its statement-level slot
        self.containers = [_Container(id(tree), (0, 0), _END, list(tree.items))]
        self._walk(tree)
        self._attach(scan_comments(text))

    # ---- where comments go ---------------------------------------------------------------
    def _walk(self, tree: S.File) -> None:
        stack: list[tuple[S.Node, S.Node | None, int]] = [(tree, None, id(tree))]
        while stack:
            node, parent, statement = stack.pop()
            self.parents[id(node)] = parent
            if isinstance(parent, (S.File, S.Section)) or (isinstance(parent, S.Definition)
                                                           and any(s is node for s in parent.body)):
                statement = id(node)
            self.statement_of[id(node)] = statement
            self._register(node, parent)
            stack.extend((c, node, statement) for c in children(node))

    def _register(self, node: S.Node, parent) -> None:
        """Record the node as a container of slots, if it is one."""
        span = node.span
        if isinstance(node, S.Definition):
            if node.alias is None:
                self.containers.append(_Container(id(node), _start(span), _end(span),
                                                  list(node.body)))
            if node.params:
                self.containers.append(_Container(id(node.params), _start(node.params[0].span),
                                                  _end(node.params[-1].span), list(node.params)))
        elif isinstance(node, S.Section):
            self.containers.append(_Container(id(node), _start(span), _end(span),
                                              list(node.settings)))
        elif isinstance(node, (S.ListExpr, S.TupleExpr)):
            self.containers.append(_Container(id(node), _start(span), _end(span),
                                              list(node.items)))
        elif isinstance(node, S.Call):
            self.containers.append(_Container(id(node), _start(span), _end(span),
                                              list(node.args)))
        elif isinstance(node, S.Pipe) and not (isinstance(parent, S.Pipe) and parent.left is node):
            stages: list[S.Node] = []
            head: S.Node = node
            while isinstance(head, S.Pipe):
                stages.append(head.stage)
                head = head.left
            self.containers.append(_Container(id(node), _start(span), _end(span),
                                              [head] + stages[::-1]))

    def _attach(self, comments: list[Comment]) -> None:
        for c in comments:
            pos = (c.line, c.col)
            box = min((k for k in self.containers if k.start < pos < k.end),
                      key=lambda k: (k.end[0] - k.start[0], k.end[1] - k.start[1]))
            where, key = self._place(c, pos, box)
            {"lead": self.leading, "trail": self.trailing, "end": self.ends}[where] \
                .setdefault(key, []).append(c)
            self._mark(key, where == "end")

    def _place(self, c: Comment, pos: tuple, box: _Container) -> tuple[str, int]:
        slots = box.slots
        if c.trailing:
            ending = [s for s in slots if s.span.end_line == c.line and _end(s.span) <= pos]
            if ending:
                return "trail", id(ending[-1])
        for s in slots:
            if _start(s.span) < pos < _end(s.span):
                return ("trail" if c.trailing else "lead"), id(s)
        for s in slots:
            if _start(s.span) > pos:
                return "lead", id(s)
        return "end", box.key

    def _mark(self, key: int, itself: bool) -> None:
        """Mark the ancestors of a slot with a comment (and a container with end comments
        itself): none of them may print on one line."""
        if itself:
            self.marked.add(key)
        node = self.parents.get(key)
        while node is not None:
            self.marked.add(id(node))
            node = self.parents.get(id(node))

    # ---- printing ------------------------------------------------------------------------
    def file(self, tree: S.File) -> str:
        out: list[Line] = []
        prev = None
        for item in tree.items:
            force = prev is not None and (_multiline(prev) or _multiline(item))
            self.slot(out, item, 0, prev is None, force)
            prev = item
        self._end_comments(out, id(tree), 0, not out)
        text = "\n".join(line.render() for line in out).strip("\n")
        return text + "\n" if text else ""

    def slot(self, out: list[Line], node: S.Node, indent: int, first: bool,
             force_blank: bool = False) -> None:
        """A statement-level node with its comments, and a blank line above it if it had one."""
        lines = self.statement(node, indent)
        lines[0].text = " " * indent + lines[0].text
        lines[-1].comments += self.take_trailing(node)
        leading = list(self.take_leading(node)) + self._missed(node)
        blank = force_blank
        for c in leading:
            if not first and (blank or c.blank_before):
                out.append(Line(""))
            blank = first = False
            out.append(Line(" " * indent + c.text))
        if not first and (blank or self._blank_above(node)):
            out.append(Line(""))
        out += lines

    def _missed(self, node: S.Node) -> list[Comment]:
        """Comments attached inside the statement that its printing did not place (a safety net:
        they go above it)."""
        missed = []
        me = id(node)
        for where, table in (("lead", self.leading), ("trail", self.trailing),
                             ("end", self.ends)):
            for key, comments in table.items():
                if (where, key) not in self.emitted and key != me \
                        and self.statement_of.get(key) == me:
                    self.emitted.add((where, key))
                    missed += comments
        return sorted(missed, key=lambda c: (c.line, c.col))

    def _blank_above(self, node: S.Node) -> bool:
        lines = self.source_lines.get(node.span.source, [])
        line = node.span.line
        return 1 < line <= len(lines) + 1 and not lines[line - 2].strip()

    def _end_comments(self, out: list[Line], key: int, indent: int, first: bool) -> None:
        for c in self.take_ends(key):
            if not first and c.blank_before:
                out.append(Line(""))
            first = False
            out.append(Line(" " * indent + c.text))

    def statement(self, n: S.Node, indent: int) -> list[Line]:  # noqa: C901 - one case a node
        if isinstance(n, S.Definition):
            return self.definition(n, indent)
        if isinstance(n, S.Section):
            out = [Line(n.name + " {")]
            for i, setting in enumerate(n.settings):
                self.slot(out, setting, indent + INDENT, i == 0)
            self._end_comments(out, id(n), indent + INDENT, not n.settings)
            return _close(out, indent)
        if isinstance(n, S.Use):
            return [Line("use " + self._use_path(n))]
        if isinstance(n, S.Const):
            parts = [f"const {n.name} = ", (n.value, PIPE)]
        elif isinstance(n, S.Setting):
            parts = [f"{n.key} = ", (n.value, PIPE)]
        elif isinstance(n, S.Assign):
            parts = [", ".join(n.names) + " = ", (n.value, PIPE)]
        elif isinstance(n, S.Outputs):
            parts = ["out "] + _joined(n.values)
        elif isinstance(n, S.Inputs):
            parts = ["input " if any(d.type is not None for d in n.decls) else "in "]
            for i, d in enumerate(n.decls):
                parts += ([", "] if i else []) + [d.name]
                parts += [": ", (d.type, PIPE)] if d.type is not None else []
        elif isinstance(n, S.ExprStmt):
            sign = leading_sign(n.value)  # a statement may not start with `-`: `(-x) -> ...`
            if sign is not None:
                self.parenthesized.add(id(sign))
            parts = [(n.value, PIPE)]
        else:  # pragma: no cover - the grammar has no other statement
            raise TypeError(f"cannot format {type(n).__name__}")
        return self.cat(indent, indent, parts)

    def definition(self, n: S.Definition, indent: int) -> list[Line]:
        parts: list = [("model " if n.is_model else "block ") + n.name]
        if n.params:
            parts.append(("items", n.params, "(", ")", True))
        if n.alias is not None:
            return self.cat(indent, indent, parts + [" = ", (n.alias, PIPE)])
        out = self.cat(indent, indent, parts + [" {"])
        for i, stmt in enumerate(n.body):
            self.slot(out, stmt, indent + INDENT, i == 0)
        self._end_comments(out, id(n), indent + INDENT, not n.body)
        return _close(out, indent)

    def _use_path(self, n: S.Use) -> str:
        span = n.span
        lines = self.source_lines.get(span.source, [])
        if span.line == span.end_line and span.line <= len(lines):
            written = lines[span.line - 1][span.col - 1: span.end_col - 1]
            if written.startswith("use"):
                return written[3:].strip()
        return quote(n.path)


def _joined(values) -> list:
    parts: list = []
    for i, v in enumerate(values):
        parts += ([", "] if i else []) + [(v, PIPE)]
    return parts


def _close(out: list[Line], indent: int) -> list[Line]:
    if len(out) == 1:
        out[0].text += "}"
    else:
        out.append(Line(" " * indent + "}"))
    return out


def _multiline(node: S.Node) -> bool:
    return isinstance(node, S.Section) or (isinstance(node, S.Definition) and node.alias is None)
