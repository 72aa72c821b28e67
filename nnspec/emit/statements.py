"""The statements of one use of a block, as emit/source.py writes them, and their shape: what they
are once their numbers are set aside, where those numbers are, and the keyword arguments that a
layer leaves out when they have PyTorch's default (`stride=1`), which one class for several uses
must write out (`stride=stride`).

Only text that emit/source.py generated is parsed here (with `ast`, never run).
"""
from __future__ import annotations

import ast
import inspect
import io
import tokenize
from dataclasses import dataclass
from functools import lru_cache


NUMBER_TYPES = (int, float, bool)
LINE = 100  # model.py's line length, as the linter in the tests checks it


@dataclass(frozen=True)
class Stmt:
    """One statement: `code` (continuation lines of a broken container keep their indentation,
    relative to `indent`), and its trailing comment without `# `; code "" is a comment line."""

    indent: int
    code: str
    comment: str = ""


@lru_cache(maxsize=65536)
def split_comment(line: str) -> Stmt:
    """A generated line (or a container broken over lines) as a Stmt."""
    indent = len(line) - len(line.lstrip(" "))
    text = line[indent:]
    comment = ""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        tokens = []
    found = [t for t in tokens if t.type == tokenize.COMMENT]
    if found:
        last = found[-1]
        lines = text.split("\n")
        row, col = last.start
        if row == len(lines):
            comment = lines[-1][col:][1:].lstrip(" ")
            lines[-1] = lines[-1][:col].rstrip(" ")
            text = "\n".join(lines)
    return Stmt(indent, text, comment)


def _parse(code: str) -> ast.AST | None:
    if not code:
        return None
    try:
        return ast.parse(code + ("\n    pass" if code.rstrip().endswith(":") else ""))
    except SyntaxError:
        return None


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, NUMBER_TYPES)
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    if isinstance(node, ast.Tuple):
        return all(_is_literal(e) for e in node.elts)
    return False


def _torch_callable(call: ast.Call):
    """The torch class or function `nn.X(...)` / `F.x(...)` calls, else None."""
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("nn", "F"):
        # torch only here: emitting model.py's text stays torch-free (tests/test_torch_free.py)
        import torch.nn as nn
        import torch.nn.functional as F

        owner = {"nn": nn, "F": F}[f.value.id]
        if owner is not None:
            return getattr(owner, f.attr, None)
    return None


class _Blank(ast.NodeTransformer):
    """Numbers become a placeholder; with `loose`, so do the literal keyword arguments of torch
    calls (present in one use, left at their default in another)."""

    def __init__(self, loose: bool):
        self.loose = loose

    def visit_Constant(self, node):
        if isinstance(node.value, NUMBER_TYPES):
            return ast.Name("_", ast.Load())
        return node

    def visit_Call(self, node):
        if self.loose and _torch_callable(node) is not None:
            node.keywords = [k for k in node.keywords if not _is_literal(k.value)]
        self.generic_visit(node)
        return node


def key(stmt: Stmt, loose: bool = True) -> tuple:
    """What a statement is with its numbers set aside; equal keys align across uses."""
    return _key(stmt.indent, stmt.code, loose)


@lru_cache(maxsize=65536)
def _key(indent: int, code: str, loose: bool) -> tuple:
    stmt = Stmt(indent, code)
    tree = _parse(stmt.code)
    if tree is None:
        return (stmt.indent, "#" if not stmt.code else stmt.code)
    return (stmt.indent, ast.dump(_Blank(loose).visit(tree)))


@lru_cache(maxsize=65536)
def slots(code: str) -> list[tuple[int, int, object]]:
    """(start, end, value) of every number in `code`, as character offsets."""
    tree = _parse(code)
    if tree is None:
        return []
    starts = _line_starts(code)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, NUMBER_TYPES) \
                and node.lineno <= len(starts):
            out.append((_offset(code, starts, node.lineno, node.col_offset),
                        _offset(code, starts, node.end_lineno, node.end_col_offset), node.value))
    return sorted(out, key=lambda s: s[0])


def _line_starts(code: str) -> list[int]:
    starts, pos = [], 0
    for line in code.split("\n"):
        starts.append(pos)
        pos += len(line) + 1
    return starts


def _offset(code: str, starts: list[int], line: int, col: int) -> int:
    """A character offset from ast's (line, UTF-8 byte column)."""
    start = starts[line - 1]
    text = code[start:].split("\n", 1)[0]
    return start + len(text.encode()[:col].decode(errors="ignore"))


def fill_defaults(codes: list[str]) -> list[str] | None:
    """The statements of several uses with every literal keyword argument of a torch call that
    some use writes written by all (with PyTorch's default where a use left it out), or None
    when a default is unknown."""
    unique = list(dict.fromkeys(codes))
    filled = _fill(tuple(unique))
    if filled is None:
        return None
    new = dict(zip(unique, filled))
    return [new[c] for c in codes]


@lru_cache(maxsize=4096)
def _fill(codes: tuple[str, ...]) -> list[str] | None:
    codes = list(codes)
    for _ in range(8 * len(codes) + 8):
        trees = [_parse(c) for c in codes]
        if any(t is None for t in trees):
            return codes
        calls = [[n for n in ast.walk(t) if isinstance(n, ast.Call)] for t in trees]
        if len({len(c) for c in calls}) != 1:
            return None
        change = None
        for j in range(len(calls[0])):
            names = [{k.arg for k in c[j].keywords} for c in calls]
            union = set().union(*names)
            for i, have in enumerate(names):
                if have != union:
                    change = (i, j, union - have)
                    break
            if change:
                break
        if change is None:
            return codes
        i, j, missing = change
        new = _with_defaults(codes[i], calls[i][j], missing)
        if new is None:
            return None
        codes = codes[:i] + [new] + codes[i + 1:]
    return None


def _with_defaults(code: str, call: ast.Call, missing: set[str]) -> str | None:
    target = _torch_callable(call)
    try:
        params = list(inspect.signature(target).parameters.values()) if target else None
    except (TypeError, ValueError):
        params = None
    if not params:
        return None
    order = [p.name for p in params]
    defaults = {p.name: p.default for p in params}
    if any(m not in defaults or not isinstance(defaults[m], NUMBER_TYPES + (type(None),))
           for m in missing):
        return None
    starts = _line_starts(code)

    def seg(node):
        return code[_offset(code, starts, node.lineno, node.col_offset):
                    _offset(code, starts, node.end_lineno, node.end_col_offset)]

    kws = {k.arg: seg(k.value) for k in call.keywords if k.arg is not None}
    kws.update({m: repr(defaults[m]) for m in missing})
    names = sorted(kws, key=lambda n: order.index(n) if n in order else len(order))
    args = [seg(a) for a in call.args] + [f"{n}={kws[n]}" for n in names]
    start = _offset(code, starts, call.lineno, call.col_offset)
    end = _offset(code, starts, call.end_lineno, call.end_col_offset)
    return code[:start] + f"{seg(call.func)}({', '.join(args)})" + code[end:]


def fit(code: str, indent: int) -> str:
    """A one-line statement longer than LINE with its call's arguments one per line, as black
    writes them (`x = nn.Foo(\n    a,\n    b=1,\n)`); other statements as they are."""
    if "\n" in code:  # a broken container: its items, each on its own line, are fitted
        lines = code.split("\n")
        for i, line in enumerate(lines):
            pad = len(line) - len(line.lstrip(" "))
            if i and indent + len(line) > LINE and line.endswith(","):
                lines[i] = " " * pad + fit(line[pad:-1], indent + pad) + ","
        return "\n".join(lines)
    if indent + len(code) <= LINE:
        return code
    tree = _parse(code)
    stmt = tree.body[0] if tree is not None and len(tree.body) == 1 else None
    value = getattr(stmt, "value", None)
    if not isinstance(value, ast.expr):
        return code
    starts = _line_starts(code)

    def seg(node):
        return code[_offset(code, starts, node.lineno, node.col_offset):
                    _offset(code, starts, node.end_lineno, node.end_col_offset)]

    def render(node, at: int, col: int, tail: int = 0) -> str:
        """`node` starting at column `col` of a line indented `at`, followed by `tail` more
        characters; a call that does not fit gets its arguments one per line, recursively."""
        text = seg(node)
        if col + len(text) + tail <= LINE:
            return text
        if isinstance(node, ast.Attribute):
            head = text[:len(text) - len(node.attr) - 1]
            # `(a * b).masked_fill`: the parentheses are not part of the inner node's text
            inner = render(node.value, at, col, tail + len(node.attr) + 2) \
                if head == seg(node.value) else head
            return f"{inner}.{node.attr}"
        if not isinstance(node, ast.Call) or not (node.args or node.keywords):
            return text
        head = render(node.func, at, col, 1)
        items = [render(a, at + 4, at + 4, 1) for a in node.args] + [
            f"{k.arg}={render(k.value, at + 4, at + 4 + len(k.arg) + 1, 1)}" if k.arg
            else f"**{seg(k.value)}" for k in node.keywords]
        pad = " " * (at + 4)
        return head + "(\n" + "".join(f"{pad}{item},\n" for item in items) + " " * at + ")"

    start = _offset(code, starts, value.lineno, value.col_offset)
    end = _offset(code, starts, value.end_lineno, value.end_col_offset)
    return code[:start] + render(value, indent, indent + start) + code[end:]
