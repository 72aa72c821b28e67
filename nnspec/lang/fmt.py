"""`nnspec fmt`: one canonical layout of a .nn file, printed from its syntax nodes.

The layout: two spaces a level, one statement a line, `k=v` in calls and `name = default` in
parameters and settings, at most one blank line kept where the user left one (and always one
between multi-line definitions), lines within WIDTH where the language lets them break (see
fmt_expr). Literals keep their written form (`1e-5`, `1_000`); parentheses are precedence's.

Comments are attached to the statement, item or stage they precede or trail (fmt_comments); a
sequence holding one is printed one item a line so that the comment keeps its place. A comment
that a statement's printing did not place goes above the statement: none is ever lost.
"""
from __future__ import annotations

from nnspec.lang import syntax as S
from nnspec.lang.fmt_comments import Comment, CommentMap
from nnspec.lang.fmt_expr import INDENT, PIPE, ExprPrinter, Line, leading_sign, quote
from nnspec.lang.parse import parse


def format_text(text: str, name: str = "<string>") -> str:
    """The canonical layout of one .nn source; raises SpecError (located) if it does not parse."""
    text = text[1:] if text.startswith("\ufeff") else text
    tree = parse(text, name)
    return _Formatter(tree, text).file(tree)


class _Formatter(ExprPrinter):
    def __init__(self, tree: S.File, text: str):
        self.comments = CommentMap(tree, text)
        super().__init__({tree.span.source: text.split("\n")}, self.comments)
        self.by_statement: dict[int, list[tuple[str, int]]] = {}
        for where in ("lead", "trail", "end", "head"):
            for key in self.comments.table(where):
                owner = self.comments.statement_of.get(key)
                self.by_statement.setdefault(owner, []).append((where, key))

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
        for where, key in self.by_statement.get(id(node), ()):
            if (where, key) not in self.emitted and key != id(node):
                self.emitted.add((where, key))
                missed += self.comments.table(where)[key]
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
            out = [Line(n.name + " {", self._take_head(n))]
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
        out[-1].comments += self._take_head(n)
        for i, stmt in enumerate(n.body):
            self.slot(out, stmt, indent + INDENT, i == 0)
        self._end_comments(out, id(n), indent + INDENT, not n.body)
        return _close(out, indent)

    def _take_head(self, n: S.Node) -> list[Comment]:
        """The comments after the `{` of a body."""
        self.emitted.add(("head", id(n)))
        return list(self.comments.heads.get(id(n), []))

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
