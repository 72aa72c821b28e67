"""Lark tree -> syntax nodes: one method per grammar rule, each node keeping its source span.

Operator chains arrive flat from the grammar and are folded here by precedence; literals are
checked on the way (an integer of more than MAX_INT_DIGITS digits, an infinite float, a bad string
escape), each refused with one located diagnostic.
"""
from __future__ import annotations

import ast
import warnings

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from nnspec.lang import syntax as S
from nnspec.lang.names import NameSyntaxError, fstring
from nnspec.lang.diagnostics import Diagnostic, Source, Span, SpecError

MAX_INT_DIGITS = 18  # literals beyond this are refused: no spec needs 10**18 of anything


class LiteralError(Exception):
    """A literal the syntax cannot hold; carries its diagnostic out of the transformer."""

    def __init__(self, diag: Diagnostic):
        self.diag = diag


def to_syntax(tree: Tree, source: Source) -> S.File:
    """The `syntax.File` of a parsed tree; raises SpecError for a literal out of range."""
    try:
        return ToSyntax(source).transform(tree)
    except LiteralError as err:
        raise SpecError([err.diag]) from None
    except VisitError as err:  # Lark wraps what a transformer method raises
        if isinstance(err.orig_exc, LiteralError):
            raise SpecError([err.orig_exc.diag]) from None
        raise


# binary operators from loosest to tightest
_PRECEDENCE = [{"or"}, {"and"}, {"==", "!=", "<", "<=", ">", ">="}, {"+", "-"},
               {"*", "/", "//", "%", "@"}]


@v_args(meta=True)
class ToSyntax(Transformer):
    def __init__(self, source: Source):
        super().__init__()
        self.source = source

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", False):
            return Span(self.source, 1, 1, 1, 2)
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.source, tok.line, tok.column, tok.end_line, tok.end_column)

    # top level
    def start(self, meta, items):
        return S.File(self._span(meta), tuple(items))

    def use(self, meta, ch):
        return S.Use(self._span(meta), _string(ch[0], self, ch[0]))

    def const(self, meta, ch):
        return S.Const(self._span(meta), str(ch[0]), ch[1])

    def model(self, meta, ch):
        return S.Definition(self._span(meta), True, str(ch[0]), ch[1] or (), ch[2])

    def block(self, meta, ch):
        return S.Definition(self._span(meta), False, str(ch[0]), ch[1] or (), ch[2])

    def block_alias(self, meta, ch):
        return S.Definition(self._span(meta), False, str(ch[0]), ch[1] or (), (), ch[2])

    def section(self, meta, ch):
        return S.Section(self._span(meta), str(ch[0]), self._tok_span(ch[0]), tuple(ch[1:]))

    def setting(self, meta, ch):
        return S.Setting(self._span(meta), str(ch[0]), self._tok_span(ch[0]), ch[1])

    def params(self, meta, ch):
        return tuple(p for p in ch if p is not None)

    def param(self, meta, ch):
        return S.Param(self._span(meta), str(ch[0]), ch[1])

    def body(self, meta, ch):
        return tuple(ch)

    # statements
    def inputs(self, meta, ch):
        return S.Inputs(self._span(meta), tuple(ch))

    def input(self, meta, ch):
        return S.InputDecl(self._span(meta), str(ch[0]), ch[1])

    def outputs(self, meta, ch):
        return S.Outputs(self._span(meta), tuple(ch))

    def assign(self, meta, ch):
        return S.Assign(self._span(meta), tuple(str(c) for c in ch[:-1]), ch[-1])

    def expr_stmt(self, meta, ch):
        return S.ExprStmt(self._span(meta), ch[0])

    # expressions
    def pipe(self, meta, ch):
        return S.Pipe(self._span(meta), ch[0], ch[1])

    def when(self, meta, ch):
        return S.When(self._span(meta), ch[0], ch[1])

    def named(self, meta, ch):
        tok, span = ch[0], self._tok_span(ch[0])
        if tok.type == "NAME":
            return S.Named(self._span(meta), str(tok), span, ch[1])
        if tok.type == "STRING":
            quoted = S.Literal(span, _string(tok, self, tok))
        else:
            try:  # each hole is parsed at its place in the file, so its spans point into it
                quoted = fstring(tok, self.source, self.transform)
            except NameSyntaxError as err:
                raise LiteralError(err.diag) from None
        return S.Named(self._span(meta), str(tok), span, ch[1], quoted)

    def splice(self, meta, ch):
        if str(ch[0]) != "*":
            raise LiteralError(Diagnostic(
                "E0103", f"unexpected `{ch[0]}`", self._tok_span(ch[0]),
                "`*items` splices a list into a list; other operators go between two values"))
        splice = S.Splice(self._span(meta), ch[1])
        return splice if len(ch) == 2 else S.When(self._span(meta), splice, ch[2])

    def comprehension(self, meta, ch):
        names = ch[1:-1]
        first, last = self._tok_span(names[0]), self._tok_span(names[-1])
        span = Span(self.source, first.line, first.col, last.end_line, last.end_col)
        return S.Comprehension(self._span(meta), ch[0], tuple(str(n) for n in names), span, ch[-1])

    def named_model(self, meta, ch):
        """A child called `model`, the keyword, as transformers' *ForCausalLM name theirs."""
        span = self._span(meta)
        name_span = Span(span.source, span.line, span.col, span.line, span.col + len("model"))
        return S.Named(span, "model", name_span, ch[0])

    def operators(self, meta, ch):
        """`a op b op c ...` arrives flat; fold it by precedence, left to right within a level."""
        operands, ops = ch[0::2], [str(t) for t in ch[1::2]]

        def fold(lo: int, hi: int, level: int):
            if level == len(_PRECEDENCE):
                return operands[lo]
            node, start = None, lo
            for i in range(lo, hi):
                if ops[i] in _PRECEDENCE[level]:
                    right = fold(start, i, level + 1)
                    node = right if node is None else self._binop(node, ops[start - 1], right)
                    start = i + 1
            right = fold(start, hi, level + 1)
            return right if node is None else self._binop(node, ops[start - 1], right)

        return fold(0, len(ops), 0)

    def _binop(self, left: S.Node, op: str, right: S.Node) -> S.BinOp:
        a, b = left.span, right.span
        return S.BinOp(Span(self.source, a.line, a.col, b.end_line, b.end_col), op, left, right)

    def ifelse(self, meta, ch):
        return S.IfElse(self._span(meta), ch[0], ch[1], ch[2])

    def power(self, meta, ch):
        return S.BinOp(self._span(meta), "**", ch[0], ch[2])

    def not_(self, meta, ch):
        return S.Unary(self._span(meta), "not", ch[1])

    def sign(self, meta, ch):
        return ch[1] if str(ch[0]) == "+" else S.Unary(self._span(meta), "-", ch[1])

    def call(self, meta, ch):
        return S.Call(self._span(meta), ch[0], tuple(ch[1] or ()))

    def args(self, meta, ch):
        return tuple(a if isinstance(a, S.Arg) else S.Arg(a.span, None, a) for a in ch if a is not None)

    def kwarg(self, meta, ch):
        return S.Arg(self._span(meta), str(ch[0]), ch[1])

    def index(self, meta, ch):
        return S.Index(self._span(meta), ch[0], tuple(c for c in ch[1:] if c is not None))

    def attr(self, meta, ch):
        return S.Attr(self._span(meta), ch[0], str(ch[1]))

    def name(self, meta, ch):
        return S.Name(self._span(meta), str(ch[0]))

    def int(self, meta, ch):
        # leading zeros are dropped before int(): Python refuses to convert over 4,300 digits
        text = str(ch[0]).replace("_", "").lstrip("0") or "0"
        if len(text) > MAX_INT_DIGITS:
            raise LiteralError(Diagnostic("E0104", "integer literal too large", self._span(meta),
                                           f"integers have at most {MAX_INT_DIGITS} digits"))
        return S.Literal(self._span(meta), int(text))

    def float(self, meta, ch):
        value = float(str(ch[0]).replace("_", ""))
        if value != value or value in (float("inf"), float("-inf")):
            raise LiteralError(Diagnostic("E0104", "number literal out of range", self._span(meta)))
        return S.Literal(self._span(meta), value)

    def string(self, meta, ch):
        return S.Literal(self._span(meta), _string(ch[0], self, ch[0]))

    def true(self, meta, ch):
        return S.Literal(self._span(meta), True)

    def false(self, meta, ch):
        return S.Literal(self._span(meta), False)

    def tuple(self, meta, ch):
        return S.TupleExpr(self._span(meta), tuple(c for c in ch if c is not None))

    def list(self, meta, ch):
        return S.ListExpr(self._span(meta), tuple(c for c in ch if c is not None))


def _string(tok: Token, owner: ToSyntax, where: Token) -> str:
    try:
        with warnings.catch_warnings():  # an unknown escape such as \q is only a warning in Python
            warnings.simplefilter("error")
            value = ast.literal_eval(str(tok))
    except (ValueError, SyntaxError, Warning):
        raise LiteralError(Diagnostic("E0105", "invalid escape in string", owner._tok_span(where),
                                       'use \\\\ for a backslash and \\" for a quote')) from None
    if not isinstance(value, str):  # pragma: no cover - the STRING regexp only admits strings
        raise LiteralError(Diagnostic("E0105", "invalid string", owner._tok_span(where)))
    return value
