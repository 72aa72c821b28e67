"""Expressions of `nnspec fmt`: one line when they fit in WIDTH columns, else broken where the
language lets a line break: before `->` and `when` (the lexer continues a statement there), and
inside brackets (where new lines are white space).

A printed expression is a list of `Line`s: the first one's text goes after whatever the caller has
already written on its line (at column `col`); the following ones are whole lines, indentation
included. Comments ride beside the text, so that appending `,` or `)` never lands inside one.
Parentheses come from precedence alone: the syntax nodes do not keep the ones the user wrote.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.lang import syntax as S

WIDTH = 100
INDENT = 2

# binding levels, loosest first, as the grammar nests them
PIPE, WHEN, NAMED, IFELSE = 0, 1, 2, 3
_BINARY = {"or": 4, "and": 5, "==": 6, "!=": 6, "<": 6, "<=": 6, ">": 6, ">=": 6, "+": 7, "-": 7,
           "*": 8, "/": 8, "//": 8, "%": 8, "@": 8}
UNARY, POWER, ATOM = 9, 10, 11
MAX_HEAD = 24  # a flow's head longer than this puts the `->` of its further lines under it


def precedence(node: S.Node) -> int:
    if isinstance(node, S.Pipe):
        return PIPE
    if isinstance(node, S.When):
        return WHEN
    if isinstance(node, (S.Named, S.Splice)):
        return NAMED
    if isinstance(node, S.IfElse):
        return IFELSE
    if isinstance(node, S.BinOp):
        return POWER if node.op == "**" else _BINARY[node.op]
    if isinstance(node, S.Unary):
        return UNARY
    return ATOM


@dataclass
class Line:
    text: str
    comments: list = field(default_factory=list)  # fmt_comments.Comment, trailing the text

    def render(self) -> str:
        """The line with its comments, the first after as many spaces as it had (at least two,
        and two if more would pass WIDTH): comments aligned by hand stay aligned."""
        text = self.text.rstrip()
        if not self.comments:
            return text
        comments = "  ".join(c.text for c in self.comments)
        gap = max(2, self.comments[0].gap)
        if len(text) + gap + len(comments) > WIDTH:
            gap = 2
        return text + " " * gap + comments


def quote(value: str) -> str:
    """A string literal for `value` (used only where the written form is not at hand)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def leading_sign(node: S.Node) -> S.Node | None:
    """The `-x` the printed node would start with (a statement may not: see the grammar)."""
    while True:
        if isinstance(node, S.Unary):
            return node if node.op == "-" else None
        if isinstance(node, S.Pipe):
            node = node.left
        elif isinstance(node, S.When):
            node = node.item
        elif isinstance(node, S.IfElse):
            node = node.then
        elif isinstance(node, S.BinOp) and node.op != "**":
            node = node.left
        else:
            return None


class ExprPrinter:
    """Prints expressions; `comments` says which slots carry comments (nnspec.lang.fmt_comments)."""

    def __init__(self, source_lines: dict, comments):
        self.source_lines = source_lines  # Source -> its lines, for literals as the user wrote them
        self.leading = comments.leading    # id(slot) -> own-line comments before it
        self.trailing = comments.trailing  # id(slot) -> comments at the end of its last line
        self.ends = comments.ends          # id(container) -> own-line comments before its closer
        self.marked = comments.marked      # ids of nodes with a comment somewhere inside
        self.emitted: set[tuple[str, int]] = set()
        self.parenthesized: set[int] = set()  # ids of nodes that keep parentheses all the same

    # ---- comments ------------------------------------------------------------------------
    def take_leading(self, node) -> list:
        self.emitted.add(("lead", id(node)))
        return self.leading.get(id(node), [])

    def take_trailing(self, node) -> list:
        self.emitted.add(("trail", id(node)))
        return list(self.trailing.get(id(node), []))

    def take_ends(self, key) -> list:
        self.emitted.add(("end", key))
        return self.ends.get(key, [])

    def commented(self, node) -> bool:
        """Whether the node holds comments itself or inside: then it never prints on one line."""
        return id(node) in self.marked or id(node) in self.leading or id(node) in self.trailing

    # ---- one line ------------------------------------------------------------------------
    def literal(self, node: S.Literal) -> str:
        if isinstance(node.value, bool):
            return "true" if node.value else "false"
        span = node.span
        if span.line == span.end_line:
            lines = self.source_lines.get(span.source)
            if lines is None:
                lines = self.source_lines[span.source] = span.source.text.split("\n")
            if 0 < span.line <= len(lines):
                text = lines[span.line - 1][span.col - 1: span.end_col - 1]
                if text:
                    return text  # as written: 1e-5 stays 1e-5, 1_000 stays 1_000
        return quote(node.value) if isinstance(node.value, str) else repr(node.value)

    def flat(self, n: S.Node, min_prec: int = PIPE) -> str:
        text = self._flat(n)
        return f"({text})" if precedence(n) < min_prec or id(n) in self.parenthesized else text

    def _flat(self, n: S.Node) -> str:  # noqa: C901 - one case per node type
        f = self.flat
        if isinstance(n, S.Name):
            return n.id
        if isinstance(n, S.Literal):
            return self.literal(n)
        if isinstance(n, S.ListExpr):
            return "[" + ", ".join(f(i) for i in n.items) + "]"
        if isinstance(n, S.TupleExpr):
            return "(" + ", ".join(f(i) for i in n.items) + ")"
        if isinstance(n, S.Arg):
            return f(n.value) if n.name is None else f"{n.name}={f(n.value)}"
        if isinstance(n, S.Param):
            return n.name if n.default is None else f"{n.name} = {f(n.default)}"
        if isinstance(n, S.Call):
            return f(n.func, ATOM) + "(" + ", ".join(f(a) for a in n.args) + ")"
        if isinstance(n, S.Index):
            return f(n.target, ATOM) + "[" + ", ".join(f(i) for i in n.items) + "]"
        if isinstance(n, S.Attr):
            return f(n.target, ATOM) + "." + n.name
        if isinstance(n, S.BinOp):
            if n.op == "**":
                return f(n.left, ATOM) + " ** " + f(n.right, UNARY)
            p = _BINARY[n.op]
            return f(n.left, p) + f" {n.op} " + f(n.right, p + 1)
        if isinstance(n, S.IfElse):
            return f"{f(n.then, 4)} if {f(n.cond, 4)} else {f(n.other, IFELSE)}"
        if isinstance(n, S.Unary):
            return ("-" if n.op == "-" else "not ") + f(n.operand, UNARY)
        if isinstance(n, S.Pipe):
            return f(n.left, PIPE) + " -> " + f(n.stage, WHEN)
        if isinstance(n, S.When):
            return f(n.item, NAMED) + " when " + f(n.cond, IFELSE)
        if isinstance(n, S.Named):
            return n.name + ": " + f(n.value, IFELSE)
        if isinstance(n, S.Splice):
            return "*" + f(n.value, IFELSE)
        if isinstance(n, S.Comprehension):
            return (f"[{f(n.item)} for {', '.join(n.targets)} in {f(n.iter, IFELSE)}]")
        raise TypeError(f"cannot format {type(n).__name__}")  # pragma: no cover

    # ---- several lines -------------------------------------------------------------------
    def expr(self, n: S.Node, col: int, indent: int, min_prec: int = PIPE) -> list[Line]:
        """`n` written from column `col` on a line indented by `indent`."""
        wrap = precedence(n) < min_prec or id(n) in self.parenthesized
        if id(n) not in self.marked:
            text = self.flat(n, min_prec)
            if col + len(text) <= WIDTH:
                return [Line(text)]
        self.parenthesized.discard(id(n))
        if isinstance(n, S.BinOp) and n.op != "**":
            return self.operands(n, col, indent, wrap)
        if wrap:
            out = self._broken(n, col + 1, indent)
            out[0].text = "(" + out[0].text
            out[-1].text += ")"
            return out
        return self._broken(n, col, indent)

    def operands(self, n: S.BinOp, col: int, indent: int, wrap: bool) -> list[Line]:
        """`(a + b + c ...)` too long for a line: the operands of one precedence level filled
        into lines that start with their operator, in parentheses (where a new line does not
        end the statement); or, if they fit so, one after the other (parenthesized if `wrap`)."""
        level = _BINARY[n.op]
        terms: list[tuple[str, S.Node]] = []
        node: S.Node = n
        while isinstance(node, S.BinOp) and _BINARY.get(node.op) == level:
            terms.append((node.op + " ", node.right))
            node = node.left
        terms.append(("", node))
        terms.reverse()
        saved = set(self.parenthesized)
        inline = self._inline_operands(terms, level, col + wrap, indent)
        if inline is not None:
            if wrap:
                inline[0].text = "(" + inline[0].text
                inline[-1].text += ")"
            return inline
        self.parenthesized = saved
        out = [Line("(")]
        for i, (op, term) in enumerate(terms):
            least = level if i == 0 else level + 1
            here = end_col(out, col)
            text = None if id(term) in self.marked else self.flat(term, least)
            if i and text is not None and here + 1 + len(op + text) < WIDTH:
                out[-1].text += " " + op + text
                continue
            if i == 0:
                sub = self.expr(term, here, indent, least)
                out[-1].text += sub[0].text
                out[-1].comments += sub[0].comments
                out += sub[1:]
                continue
            sub = self.expr(term, col + 1 + len(op), col + 1, least)
            sub[0].text = " " * (col + 1) + op + sub[0].text
            out += sub
        out[-1].text += ")"
        return out

    def _inline_operands(self, terms: list, level: int, col: int, indent: int) -> list | None:
        """`a + (b -> ...)`: the operands one after the other, broken only inside their own
        brackets; None if that needs an operand to start right of the middle of a line."""
        out = [Line("")]
        for i, (op, term) in enumerate(terms):
            out[-1].text += f" {op}" if i else ""
            here = end_col(out, col)
            sub = self.expr(term, here, leading_spaces_of(out, indent), level + (i > 0))
            if len(sub) > 1 and here > WIDTH // 2:
                return None
            out[-1].text += sub[0].text
            out[-1].comments += sub[0].comments
            out += sub[1:]
        if col + len(out[0].text) > WIDTH or any(len(line.text) > WIDTH for line in out[1:]):
            return None
        return out

    def _broken(self, n: S.Node, col: int, indent: int) -> list[Line]:  # noqa: C901
        if isinstance(n, S.Pipe):
            return self.pipe(n, col, indent)
        if isinstance(n, S.When):
            return self.when(n, col, indent, col)
        if isinstance(n, S.Call):
            return self.cat(col, indent, [(n.func, ATOM), ("items", n.args, "(", ")", True, n)])
        if isinstance(n, S.ListExpr):
            return self.cat(col, indent, [("items", n.items, "[", "]", _is_data(n), n)])
        if isinstance(n, S.TupleExpr):
            return self.cat(col, indent, [("items", n.items, "(", ")", True, n)])
        if isinstance(n, S.Index):
            return self.cat(col, indent, [(n.target, ATOM), ("items", n.items, "[", "]", True, n)])
        if isinstance(n, S.Comprehension):  # `[`, the item, `for ... in ...`, `]`: a line each
            inner = indent + INDENT
            item = self.expr(n.item, inner, inner)
            tail = self.cat(inner, inner, [f"for {', '.join(n.targets)} in ", (n.iter, IFELSE)])
            item[0].text = " " * inner + item[0].text
            tail[0].text = " " * inner + tail[0].text
            return [Line("[")] + item + tail + [Line(" " * indent + "]")]
        if isinstance(n, S.Arg):
            return self.cat(col, indent, [(n.value, PIPE)] if n.name is None else
                            [n.name + "=", (n.value, PIPE)])
        if isinstance(n, S.Param) and n.default is not None:
            return self.cat(col, indent, [n.name + " = ", (n.default, PIPE)])
        if isinstance(n, S.Named):
            return self.cat(col, indent, [n.name + ": ", (n.value, IFELSE)])
        if isinstance(n, S.Splice):
            return self.cat(col, indent, ["*", (n.value, IFELSE)])
        if isinstance(n, S.Attr):
            return self.cat(col, indent, [(n.target, ATOM), "." + n.name])
        if isinstance(n, S.Unary):
            return self.cat(col, indent, ["-" if n.op == "-" else "not ", (n.operand, UNARY)])
        if isinstance(n, S.IfElse):
            return self.cat(col, indent, [(n.then, 4), " if ", (n.cond, 4), " else ",
                                          (n.other, IFELSE)])
        if isinstance(n, S.BinOp):  # `**`: the others are `operands`
            return self.cat(col, indent, [(n.left, ATOM), " ** ", (n.right, UNARY)])
        return [Line(self._flat(n))]

    def cat(self, col: int, indent: int, parts: list) -> list[Line]:
        """Strings, (node, min_prec) pairs and ("items", ...) bracketed sequences, one after the
        other, each starting where the one before it ended."""
        out = [Line("")]
        for part in parts:
            here = end_col(out, col)
            ind = indent if len(out) == 1 else leading_spaces(out[-1].text)
            if isinstance(part, str):
                out[-1].text += part
                continue
            if part[0] == "items":
                sub = self.bracketed(part[1], here, ind, *part[2:])
            else:
                sub = self.expr(part[0], here, ind, part[1])
            out[-1].text += sub[0].text
            out[-1].comments += sub[0].comments
            out += sub[1:]
        return out

    def bracketed(self, items, col: int, indent: int, open_: str, close: str, fill: bool,
                  key=None) -> list[Line]:
        """`open_ items close`: on one line; else filled from the column after the opener (calls,
        parameters, lists of plain values); else one item a line, indented under the line."""
        commented = any(self.commented(i) for i in items) or bool(key is not None and
                                                                  self.ends.get(id(key)))
        flats = None if commented else [self._flat(i) for i in items]
        if flats is not None and col + len(open_ + ", ".join(flats) + close) <= WIDTH:
            return [Line(open_ + ", ".join(flats) + close)]
        if flats is not None and fill and all(col + 2 + len(t) <= WIDTH for t in flats):
            out = [Line(open_)]
            for i, text in enumerate(flats):
                piece = text + ("," if i < len(flats) - 1 else close)
                start = end_col(out, col)
                if i and start + 1 + len(piece) > WIDTH:
                    out.append(Line(" " * (col + 1) + piece))
                else:
                    out[-1].text += (" " if i else "") + piece
            return out
        inner = indent + INDENT
        out = [Line(open_)]
        for i, item in enumerate(items):
            for c in self.take_leading(item):
                out.append(Line(" " * inner + c.text))
            sub = self.expr(item, inner, inner)
            sub[0].text = " " * inner + sub[0].text
            if i < len(items) - 1:
                sub[-1].text += ","
            sub[-1].comments += self.take_trailing(item)
            out += sub
        if key is not None:
            out += [Line(" " * inner + c.text) for c in self.take_ends(id(key))]
        out.append(Line(" " * indent + close))
        return out

    def pipe(self, n: S.Pipe, col: int, indent: int) -> list[Line]:
        """`a -> b -> c`: as many stages a line as fit, further lines starting with `->` under
        the first arrow; a stage with a comment ends its line."""
        stages: list[S.Node] = []
        head: S.Node = n
        while isinstance(head, S.Pipe):
            stages.append(head.stage)
            head = head.left
        stages.reverse()
        out = self.expr(head, col, indent, PIPE)
        out[-1].comments += self.take_trailing(head)
        # continuation lines put `->` under the first arrow, or under the head if that is long
        short = len(out) == 1 and len(out[0].text) <= MAX_HEAD
        if short:
            arrow = end_col(out, col) + 1
        elif len(out) > 1:  # a head over several lines: one step in from its last line
            arrow = leading_spaces(out[-1].text) + INDENT
        else:
            arrow = col
        broke = False  # a stage written over several lines ends its last one
        for i, stage in enumerate(stages):
            leading = self.take_leading(stage)
            before = len(out)
            if not leading and not out[-1].comments and not broke:
                here = end_col(out, col) + 4
                text = None if id(stage) in self.marked else self.flat(stage, WHEN)
                if text is not None and here + len(text) <= WIDTH:
                    out[-1].text += " -> " + text
                    out[-1].comments += self.take_trailing(stage)
                    continue
                if i == 0 and short:  # the first stage stays beside its head, broken inside
                    sub = self._stage(stage, here, leading_spaces_of(out, indent), arrow)
                    out[-1].text += " -> " + sub[0].text
                    out[-1].comments += sub[0].comments
                    out += sub[1:]
                    out[-1].comments += self.take_trailing(stage)
                    broke = len(out) > before
                    continue
            out += [Line(" " * arrow + c.text) for c in leading]
            sub = self._stage(stage, arrow + 3, arrow, arrow)
            sub[0].text = " " * arrow + "-> " + sub[0].text
            out += sub
            out[-1].comments += self.take_trailing(stage)
            broke = len(sub) > 1
        return out

    def _stage(self, stage: S.Node, col: int, indent: int, arrow: int) -> list[Line]:
        if isinstance(stage, S.When):  # `when` on a line of its own goes under the arrows
            return self.when(stage, col, indent, arrow)
        return self.expr(stage, col, indent, WHEN)

    def when(self, n: S.When, col: int, indent: int, when_col: int) -> list[Line]:
        """`item when cond`, `when` on a line of its own (at `when_col`) if it does not fit."""
        if id(n) not in self.marked:
            text = self._flat(n)
            if col + len(text) <= WIDTH:
                return [Line(text)]
        out = self.expr(n.item, col, indent, NAMED)
        cond = self.flat(n.cond, IFELSE)
        if id(n.cond) not in self.marked and end_col(out, col) + 6 + len(cond) <= WIDTH \
                and not out[-1].comments:
            out[-1].text += " when " + cond
            return out
        sub = self.expr(n.cond, when_col + 5, when_col, IFELSE)
        sub[0].text = " " * when_col + "when " + sub[0].text
        return out + sub


def _is_data(node: S.Node) -> bool:
    """Plain values (numbers, names, strings, lists of them): a long list of these fills its
    lines; a list of layers gets one a line."""
    if isinstance(node, (S.ListExpr, S.TupleExpr)):
        return all(_is_data(i) for i in node.items)
    if isinstance(node, S.Unary):
        return _is_data(node.operand)
    return isinstance(node, (S.Literal, S.Name, S.Attr))


def end_col(out: list[Line], col: int) -> int:
    """The column where the next text on the last line of `out` would start."""
    return col + len(out[0].text) if len(out) == 1 else len(out[-1].text)


def leading_spaces_of(out: list[Line], indent: int) -> int:
    """The indentation of the last line of `out` (`indent` while it is still the first)."""
    return indent if len(out) == 1 else leading_spaces(out[-1].text)


def leading_spaces(text: str) -> int:
    return len(text) - len(text.lstrip(" "))
