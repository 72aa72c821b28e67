"""Completion: inside `kind(` ... the kind's argument names (from its fields, with their types
and descriptions), inside `Block(` ... the block's parameters; anywhere else the layer kinds of
the registry (plugins' too, with their one-line docs), the blocks and the constants in scope.

Where the cursor is comes from the text before it alone, token by token: the innermost bracket
left open says whether it is in a call's arguments. That works while the line is half typed,
when the document does not parse.
"""
from __future__ import annotations

import re

from lsprotocol import types as lsp

from nnspec.emit.reference import _args as kind_signature  # `conv2d(out_channels, ...)` as docs
from nnspec.emit.reference import _type_text
from nnspec.lang import syntax as S
from nnspec.layers import REGISTRY
from nnspec.lsp.analysis import Analysis
from nnspec.lsp.definition import DEFINES

SCAN_CHARS = 20_000  # how far back to look for the open bracket: a call is never longer
TOKEN = re.compile(r'f?"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*'
                   r"|==|!=|<=|>=|->|\*\*|//|\S")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def completions(analysis: Analysis, line: int, col: int) -> list[lsp.CompletionItem]:
    """The items for the cursor at the 1-based (line, col) of the document."""
    lines = analysis.text.split("\n")
    if not 0 < line <= len(lines):
        return []
    before = "\n".join(lines[:line - 1] + [lines[line - 1][:col - 1]])
    if in_comment_or_string(lines[line - 1][:col - 1]):
        return []
    call = open_call(before[-SCAN_CHARS:])
    if call is not None:
        callee, given = call
        if callee in REGISTRY:
            return _kind_arguments(callee, given)
        params = _blocks(analysis).get(callee)
        if params is not None:
            return [_item(p, lsp.CompletionItemKind.Variable, f"parameter of {callee}",
                          insert=f"{p}=") for p in params if p not in given]
    return _names(analysis)


def in_comment_or_string(line: str) -> bool:
    """Whether the end of `line` (the text before the cursor) is inside a comment or a string
    (where nothing of the language is typed; strings do not span lines)."""
    last = None
    for last in TOKEN.finditer(line):
        pass
    if last is None or last.end() != len(line):
        return False
    tok = last.group()
    if tok.startswith("#"):
        return True
    quote = 1 if tok.startswith('"') else 2 if tok.startswith('f"') else 0
    return quote > 0 and (len(tok) == quote or not tok.endswith('"'))


def open_call(before: str) -> tuple[str, set[str]] | None:
    """(callee, argument names already given) when `before` ends inside `callee(` ... , else
    None: outside any bracket, or inside a list or body."""
    stack: list[tuple[str | None, set[str]]] = []
    tokens = [m.group() for m in TOKEN.finditer(before) if not m.group().startswith("#")]
    for i, tok in enumerate(tokens):
        if tok in "([{":
            callee = tokens[i - 1] if tok == "(" and i and NAME.fullmatch(tokens[i - 1]) else None
            stack.append((callee, set()))
        elif tok in ")]}":
            if stack:
                stack.pop()
        elif tok == "=" and stack and i and NAME.fullmatch(tokens[i - 1]):
            stack[-1][1].add(tokens[i - 1])
    if not stack or stack[-1][0] is None:
        return None
    return stack[-1][0], stack[-1][1]  # type: ignore[return-value]


def _kind_arguments(kind: str, given: set[str]) -> list[lsp.CompletionItem]:
    cls = REGISTRY[kind]
    items = []
    for i, (name, field) in enumerate(cls.model_fields.items()):
        if name in given:
            continue
        required = "required" if field.is_required() else "optional"
        items.append(_item(name, lsp.CompletionItemKind.Field,
                           f"{_type_text(field)} ({required})", field.description or "",
                           insert=f"{name}=", order=i))
    return items


def _names(analysis: Analysis) -> list[lsp.CompletionItem]:
    items = []
    for kind in sorted(REGISTRY):
        cls = REGISTRY[kind]
        doc = (cls.__doc__ or "").strip().splitlines()
        torch_name = f"\n\ntorch: `{cls.torch_name}`" if cls.torch_name else ""
        items.append(_item(kind, lsp.CompletionItemKind.Function,
                           f"{kind}({kind_signature(cls)})", (doc[0] if doc else "") + torch_name))
    for block, params in _blocks(analysis).items():
        items.append(_item(block, lsp.CompletionItemKind.Class, f"{block}({', '.join(params)})",
                           "a block of this spec or of a file it includes"))
    for const in _consts(analysis):
        items.append(_item(const, lsp.CompletionItemKind.Constant, "const"))
    return items


def _blocks(analysis: Analysis) -> dict[str, list[str]]:
    """Every block in scope, with its parameter names."""
    if analysis.scope is not None:
        defs = analysis.scope.definitions.values()
    elif analysis.syntax is not None:
        defs = [d for d in analysis.syntax.items if isinstance(d, S.Definition)]
    else:  # not parsed: the names, from the lines that define them
        return {m.group(1): [] for m in DEFINES.finditer(analysis.text)
                if m.group(0).lstrip().startswith("block")}
    return {d.name: [p.name for p in d.params] for d in defs if not d.is_model}


def _consts(analysis: Analysis) -> list[str]:
    if analysis.scope is not None:
        return sorted(analysis.scope.consts)
    items = analysis.syntax.items if analysis.syntax is not None else ()
    return sorted(c.name for c in items if isinstance(c, S.Const))


def _item(label: str, kind: lsp.CompletionItemKind, detail: str, doc: str = "",
          insert: str | None = None, order: int | None = None) -> lsp.CompletionItem:
    return lsp.CompletionItem(
        label, kind=kind, detail=detail, insert_text=insert,
        documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, doc) if doc else None,
        sort_text=None if order is None else f"{order:03d}")
