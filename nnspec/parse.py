"""Parse: .nn source text -> syntax nodes with spans (Lark, LALR)."""
from __future__ import annotations

import ast
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken,
                             VisitError)

from . import syntax as S
from .diagnostics import Diagnostic, Source, Span, SpecError

GRAMMAR_NAME = "nnspec.lark"

# What a user would call each terminal in "expected ..." hints.
_TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "_NL": "a new line", "_ARROW": "`->`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`",
    "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "COLON": "`:`",
    "EQUAL": "`=`", "SEMICOLON": "`;`", "DOT": "`.`", "MINUS": "`-`", "COMP_OP": "a comparison",
    "ADD_OP": "`+` or `-`", "MUL_OP": "an operator", "$END": "the end of the file",
}


def grammar_text() -> str:
    """The grammar: from the package's data when installed, else from the repository's grammar/."""
    packaged = resources.files("nnspec").joinpath("grammar").joinpath(GRAMMAR_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / GRAMMAR_NAME).read_text("utf-8")


class _BracketNewlines:
    """Post-lexer: newlines inside (...) and [...] are white space, not statement ends."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth:
                continue
            yield tok


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", postlex=_BracketNewlines(), propagate_positions=True,
                maybe_placeholders=True)


def parse(text: str, name: str = "<string>") -> S.File:
    """Parse one .nn source into a `syntax.File`; raises SpecError with one located diagnostic."""
    source = Source(name, text)
    try:
        tree = _parser().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as err:
        raise SpecError([_syntax_diagnostic(err, source)]) from None
    try:
        return _ToSyntax(source).transform(tree)
    except _LiteralError as err:
        raise SpecError([err.diag]) from None
    except VisitError as err:  # Lark wraps what a transformer method raises
        if isinstance(err.orig_exc, _LiteralError):
            raise SpecError([err.orig_exc.diag]) from None
        raise


def _syntax_diagnostic(err: UnexpectedInput, source: Source) -> Diagnostic:
    line, col = max(1, err.line or 1), max(1, err.column or 1)
    if isinstance(err, UnexpectedCharacters):
        ch = source.line(line)[col - 1: col] or "?"
        span = Span(source, line, col, line, col + 1)
        return Diagnostic("E0101", f"unexpected character `{ch}`", span,
                          "names are letters, digits and `_`; strings use double quotes")
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        last = len(source.text.splitlines()) or 1
        end = len(source.line(last)) + 1
        return Diagnostic("E0102", "unexpected end of file", Span(source, last, end, last, end + 1),
                          _expected_hint(getattr(err, "expected", set())))
    tok: Token = err.token
    if tok.type == "_NL":
        # the newline token starts at the end of the line before it: point there
        what = "end of line"
        span = Span(source, tok.line, tok.column, tok.line, tok.column + 1)
    else:
        what = f"`{tok.value.strip()}`" if tok.value.strip() else tok.type
        span = Span(source, tok.line, tok.column, tok.end_line or tok.line,
                    tok.end_column if tok.end_line == tok.line else tok.column + 1)
        if tok.type == "_ARROW":  # the arrow token may start with the newlines before it
            arrow_line = tok.line + tok.value.count("\n")
            arrow_col = len(tok.value.rsplit("\n", 1)[-1]) - 1 if "\n" in tok.value else tok.column
            span = Span(source, arrow_line, arrow_col, arrow_line, arrow_col + 2)
            what = "`->`"
    expected = set(getattr(err, "expected", None) or getattr(err, "accepts", None) or [])
    return Diagnostic("E0103", f"unexpected {what}", span, _expected_hint(expected))


def _expected_hint(expected) -> str | None:
    words = sorted({_TOKEN_WORDS.get(t, f"`{t.lower()}`" if t.isalpha() else t) for t in expected
                    if not t.startswith("__")})
    words = [w for w in words if not w.startswith("`_")]
    if not words:
        return None
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "expected " + ", ".join(words)


class _LiteralError(Exception):
    def __init__(self, diag: Diagnostic):
        self.diag = diag


MAX_INT_DIGITS = 18  # literals beyond this are refused: no spec needs 10**18 of anything


@v_args(meta=True)
class _ToSyntax(Transformer):
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
        return S.Named(self._span(meta), str(ch[0]), self._tok_span(ch[0]), ch[1])

    def or_(self, meta, ch):
        return S.BinOp(self._span(meta), "or", ch[0], ch[1])

    def and_(self, meta, ch):
        return S.BinOp(self._span(meta), "and", ch[0], ch[1])

    def not_(self, meta, ch):
        return S.Unary(self._span(meta), "not", ch[0])

    def neg(self, meta, ch):
        return S.Unary(self._span(meta), "-", ch[0])

    def compare(self, meta, ch):
        return S.BinOp(self._span(meta), str(ch[1]), ch[0], ch[2])

    def binop(self, meta, ch):
        return S.BinOp(self._span(meta), str(ch[1]), ch[0], ch[2])

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
        text = str(ch[0]).replace("_", "")
        if len(text.lstrip("0")) > MAX_INT_DIGITS:
            raise _LiteralError(Diagnostic("E0104", "integer literal too large", self._span(meta),
                                           f"integers have at most {MAX_INT_DIGITS} digits"))
        return S.Literal(self._span(meta), int(text))

    def float(self, meta, ch):
        value = float(str(ch[0]).replace("_", ""))
        if value != value or value in (float("inf"), float("-inf")):
            raise _LiteralError(Diagnostic("E0104", "number literal out of range", self._span(meta)))
        return S.Literal(self._span(meta), value)

    def string(self, meta, ch):
        return S.Literal(self._span(meta), _string(ch[0], self, ch[0]))

    def true(self, meta, ch):
        return S.Literal(self._span(meta), True)

    def false(self, meta, ch):
        return S.Literal(self._span(meta), False)

    def list(self, meta, ch):
        return S.ListExpr(self._span(meta), tuple(c for c in ch if c is not None))


def _string(tok: Token, owner: _ToSyntax, where: Token) -> str:
    try:
        with warnings.catch_warnings():  # an unknown escape such as \q is only a warning in Python
            warnings.simplefilter("error")
            value = ast.literal_eval(str(tok))
    except (ValueError, SyntaxError, Warning):
        raise _LiteralError(Diagnostic("E0105", "invalid escape in string", owner._tok_span(where),
                                       'use \\\\ for a backslash and \\" for a quote')) from None
    if not isinstance(value, str):  # pragma: no cover - the STRING regexp only admits strings
        raise _LiteralError(Diagnostic("E0105", "invalid string", owner._tok_span(where)))
    return value
