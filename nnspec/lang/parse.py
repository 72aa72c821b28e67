"""Parse: .nn source text -> syntax nodes with spans (Lark, LALR).

Here: the scans that refuse too-deep or too-long input before Lark sees it, the parse itself, and
syntax errors turned into diagnostics with hints. The Lark tree -> syntax nodes step is
nnspec.lang.to_syntax.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Diagnostic, Source, Span, SpecError
from nnspec.lang.lark_tables import cached_lark  # the LALR tables, built ahead of time
from nnspec.lang.names import not_a_name
from nnspec.lang.parse_direct import parse_direct
from nnspec.lang.to_syntax import to_syntax

GRAMMAR_NAME = "nnspec.lark"
MAX_NESTING = 100  # a tree deeper than this is refused: the passes after parsing recurse on it
# tokens in one statement: Lark spends tens of microseconds a token, so a 100,000-term sum took
# seconds to refuse; real statements (a long list of layers included) stay far below this
MAX_STATEMENT_TOKENS = 10_000

# What a user would call each terminal in "expected ..." hints.
_TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "_NL": "the end of the line", "_ARROW": "`->`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`",
    "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "COLON": "`:`",
    "EQUAL": "`=`", "SEMICOLON": "`;`", "DOT": "`.`", "MINUS": "`-`", "COMP_OP": "a comparison",
    "ADD_OP": "`+` or `-`", "MUL_OP": "an operator", "$END": "the end of the file",
    "_WHEN": "`when`", "FSTRING": "an f-string", "POW": "`**`", "_IF": "`if`",
    "_ELSE": "`else`",
}


def grammar_text() -> str:
    """The grammar, package data next to this module."""
    return resources.files("nnspec.lang").joinpath(GRAMMAR_NAME).read_text(encoding="utf-8")


class _SignStart(Exception):
    """A statement in a body starts with `+` or `-` (raised by the post-lexer)."""

    def __init__(self, tok: Token):
        self.tok = tok


class _BracketNewlines:
    """Post-lexer: newlines inside (...) and [...] are white space, not statement ends; and a
    statement in a body may not start with a sign (see the grammar's comment)."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = braces = 0
        prev = None
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "LBRACE":
                braces += 1
            elif tok.type == "RBRACE":
                braces = max(0, braces - 1)
            elif tok.type == "_NL" and depth:
                continue
            elif (tok.type == "ADD_OP" and braces and not depth
                  and prev in ("_NL", "SEMICOLON", "LBRACE")):
                raise _SignStart(tok)
            prev = tok.type
            yield tok


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return cached_lark(grammar_text(), parser="lalr", postlex=_BracketNewlines(),
                       propagate_positions=True, maybe_placeholders=True)


def parse(text: str, name: str = "<string>") -> S.File:
    """Parse one .nn source into a `syntax.File`; raises SpecError with one located diagnostic."""
    text = text[1:] if text.startswith("\ufeff") else text  # a byte-order mark some editors write
    source = Source(name, text)
    _check_brackets(source)
    _check_signs(source)
    _check_statement_length(source)
    text = text if text.endswith("\n") else text + "\n"
    syntax = parse_direct(_parser(), text, source, MAX_NESTING)  # None: a diagnostic to report
    if syntax is not None:
        return syntax
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise SpecError([_syntax_diagnostic(err, source)]) from None
    except _SignStart as err:
        raise SpecError([Diagnostic(
            "E0108", f"a statement cannot start with `{err.tok.value}`", _token_span(err.tok, source),
            "a new line ends the statement above it: wrap an expression that spans lines in "
            "parentheses, e.g. `y = (x -> relu) + x`, or end the line before with `\\`")]) from None
    _check_nesting(tree, source)
    return to_syntax(tree, source)


def _too_deep(source: Source, pos: int, message: str, help: str | None = None) -> SpecError:
    """E0107 at character offset `pos`, found by a scan of the text before parsing."""
    text = source.text
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return SpecError([Diagnostic(
        "E0107", message, Span(source, line, col, line, col + 1),
        help or f"expressions and flows nest at most {MAX_NESTING} deep; split this one over "
        "several statements")])


# statement ends (a new line, `;`, braces) and tokens; a line that starts with `->` or `when`
# continues the statement above it, and strings and comments are one token
_STATEMENT_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|\n[ \t]*(?:->|when\b)|[\n;{}]|'
                               r'[A-Za-z_0-9.]+|->|//|[=!<>]=|\S')


def _check_statement_length(source: Source) -> None:
    """Refuse a statement of more than MAX_STATEMENT_TOKENS tokens before the parser spends
    seconds on it; a newline inside brackets does not end a statement."""
    text = source.text
    if len(text) <= MAX_STATEMENT_TOKENS:
        return
    count, depth, start = 0, 0, 0
    for m in _STATEMENT_TOKENS.finditer(text):
        tok = m.group()
        if tok in "\n;{}" and not (tok == "\n" and depth):
            count, start = 0, m.end()
            continue
        if tok in "([":
            depth += 1
        elif tok in ")]":
            depth = max(0, depth - 1)
        count += 1
        if count > MAX_STATEMENT_TOKENS:
            raise _too_deep(source, start, f"statement too long (more than "
                            f"{MAX_STATEMENT_TOKENS:,} tokens)", "split it into several "
                            "statements, naming the intermediate results")


_BRACKETS = re.compile(r'[()\[\]]|"(?:[^"\\\n]|\\.)*"?|#[^\n]*')


def _check_brackets(source: Source) -> None:
    """Refuse brackets nested deeper than MAX_NESTING before parsing: the parser's stack and
    the positions it records grow with the nesting, and a few MB of `(` ran it out of memory."""
    text = source.text
    if text.count("(") + text.count("[") <= MAX_NESTING:
        return
    depth = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group()
        if ch in "([":
            depth += 1
            if depth > MAX_NESTING:
                raise _too_deep(source, m.start(), "brackets nested too deeply")
        elif ch in ")]":
            depth = max(0, depth - 1)


# a run of more than MAX_NESTING signs or `not`s nests as deep (strings and comments are skipped)
_SIGNS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|(?:(?:[-+]|\bnot\b)[ \t]*){%d,}' % (MAX_NESTING + 1))


def _check_signs(source: Source) -> None:
    text = source.text
    if text.count("-") + text.count("+") + text.count("not") <= MAX_NESTING:
        return
    for m in _SIGNS.finditer(text):
        if m.group()[:1] in "-+n":
            raise _too_deep(source, m.start(), "expression nested too deeply")


def _check_nesting(tree: Tree, source: Source) -> None:
    """Refuse a tree nested deeper than MAX_NESTING before the recursive passes overflow on it."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data == "operators":  # `a + b + c ...` arrives flat but folds into a nest
            depth += len(node.children) // 2
        if depth > MAX_NESTING:
            meta = node.meta
            span = (Span(source, 1, 1, 1, 2) if getattr(meta, "empty", False) else
                    Span(source, meta.line, meta.column, meta.end_line, meta.end_column))
            raise SpecError([Diagnostic("E0107", "expression nested too deeply", span,
                                        f"expressions and flows nest at most {MAX_NESTING} deep; "
                                        "split this one over several statements")])
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


def _syntax_diagnostic(err: UnexpectedInput, source: Source) -> Diagnostic:
    line, col = max(1, err.line or 1), max(1, err.column or 1)
    if isinstance(err, UnexpectedCharacters):
        ch = source.line(line)[col - 1: col] or "?"
        span = Span(source, line, col, line, col + 1)
        if ch == '"':
            return Diagnostic("E0101", "unterminated string", span,
                              'close it with `"` on the same line')
        if not ch.isprintable():
            return Diagnostic("E0101", f"unexpected character U+{ord(ch):04X}", span,
                              "it is invisible (often pasted along with copied text): delete it")
        return Diagnostic("E0101", f"unexpected character `{ch}`", span, _CHAR_HINTS.get(
            ch, "names are letters, digits and `_`; strings use double quotes"))
    at_end = isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken)
                                                and err.token.type == "$END")
    expected = set(getattr(err, "expected", None) or getattr(err, "accepts", None) or [])
    if at_end:
        last = source.text.count("\n") + (not source.text.endswith("\n")) or 1
        end = len(source.line(last)) + 1
        span, tok, pos = Span(source, last, end, last, end + 1), None, len(source.text)
    else:
        tok = err.token
        span, pos = _token_span(tok, source), tok.start_pos
    before = _tokens_before(source.text, pos)
    if before and before[-1].type == "MODEL" and tok is not None and tok.type != "COLON":
        # `model` may name a child (`model: ...`), so an unclosed body fails one token later
        tok, before = before[-1], before[:-1]
        span = _token_span(tok, source)
    stack = _open_brackets(before)
    diag = _bracket_diagnostic(tok, span, stack, source)
    if diag is not None:
        return diag
    # a closer other than the innermost open bracket's, or a new line inside brackets, cannot come
    inner = stack[-1].type if stack else None
    expected -= {"RPAR", "RSQB", "RBRACE"} - {_CLOSE_TYPE[inner] if inner else ""}
    if inner in ("LPAR", "LSQB"):
        expected -= {"_NL", "SEMICOLON"}
    prev = before[-1] if before else None
    if prev is not None and prev.type == "_ARROW" and (tok is None or tok.type == "_NL"):
        return Diagnostic("E0103", "expected a layer after `->`", _token_span(prev, source),
                          "to continue a flow on the next line, start that line with `->`")
    if tok is not None and tok.type in _KEYWORDS and "NAME" in expected:
        return Diagnostic("E0103", f"`{tok.value}` is a keyword, not a name", span,
                          "choose another name")
    if (tok is not None and prev is not None and tok.type in ("COLON", "EQUAL")
            and prev.type in _KEYWORDS - {"USE", "CONST", "MODEL", "BLOCK"}):
        return Diagnostic("E0103", f"`{prev.value}` is a keyword, not a name",
                          _token_span(prev, source), "choose another name")
    if (not stack and tok is not None and tok.type not in ("USE", "CONST", "MODEL", "BLOCK", "_NL")
            and (prev is None or prev.type in ("_NL", "SEMICOLON", "RBRACE"))):
        return Diagnostic("E0103", f"unexpected `{tok.value.strip()}` outside a model or block",
                          span, "the top level holds only `use`, `const`, `model` and `block`; "
                          "statements go inside a body in braces")
    if at_end:
        return Diagnostic("E0102", "unexpected end of file", span, _expected_hint(expected))
    if tok.type == "_NL":
        what = "end of line"
    elif tok.type in ("_ARROW", "_WHEN"):
        what = f"`{tok.value.strip().splitlines()[-1].strip()}`"
    else:
        what = f"`{tok.value.strip()}`" if tok.value.strip() else tok.type
    if tok.type == "COLON" and "COLON" not in expected:
        diag = not_a_name(before, tok, source)
        if diag is not None:
            return diag
    if tok.type == "COLON" and "LBRACE" in expected and not stack:
        return Diagnostic("E0103", f"unexpected {what}", span,
                          "the body of a model or block goes in braces: `model m { ... }`")
    if "_ELSE" in expected and _open_if(before):  # `a if cond` without its `else`
        return Diagnostic("E0103", f"unexpected {what}: `if` needs an `else`", span,
                          "write `a if cond else b`; to leave a layer out unless a condition "
                          "holds, write `layer when cond`")
    return Diagnostic("E0103", f"unexpected {what}", span, _expected_hint(expected))


def _open_if(before: list[Token]) -> bool:
    """Whether the statement so far has an `if` that no `else` has answered."""
    depth = 0
    for tok in reversed(before):
        if tok.type in ("_NL", "SEMICOLON", "LBRACE", "RBRACE"):
            return False
        depth += tok.type == "_ELSE"
        if tok.type == "_IF":
            if not depth:
                return True
            depth -= 1
    return False


def _token_span(tok: Token, source: Source) -> Span:
    if tok.type == "_NL":
        # the newline token starts at the end of the line before it: point there
        return Span(source, tok.line, tok.column, tok.line, tok.column + 1)
    if tok.type in ("_ARROW", "_WHEN") and "\n" in tok.value:
        # `->` and `when` tokens may start with the newlines before them: point at the word
        word = tok.value.rsplit("\n", 1)[-1]
        line = tok.line + tok.value.count("\n")
        col = len(word) - len(word.lstrip()) + 1
        return Span(source, line, col, line, col + len(word.strip()))
    end_col = tok.end_column if tok.end_line == tok.line else tok.column + 1
    return Span(source, tok.line, tok.column, tok.line, end_col)


def _tokens_before(text: str, pos: int) -> list[Token]:
    """The tokens before offset `pos`, lexed again for a diagnostic (stops at a lexing error)."""
    out: list[Token] = []
    try:
        for tok in _parser().lex(text):
            if tok.start_pos >= pos:
                break
            out.append(tok)
    except UnexpectedInput:
        pass
    return out


def _open_brackets(tokens: list[Token]) -> list[Token]:
    """The brackets still open after `tokens`, innermost last."""
    stack: list[Token] = []
    for t in tokens:
        if t.type in _PAIRS.values():
            stack.append(t)
        elif t.type in _PAIRS and stack and stack[-1].type == _PAIRS[t.type]:
            stack.pop()
    return stack


def _bracket_diagnostic(tok: Token | None, span: Span, stack: list[Token],
                        source: Source) -> Diagnostic | None:
    """An unmatched closing bracket, or an unclosed one that made the error show up later."""
    if tok is not None and tok.type == "RBRACE" and not any(t.type == "LBRACE" for t in stack):
        return Diagnostic("E0106", "unmatched `}`", span, "remove it, or add the `{` it closes")
    if tok is not None and tok.type in _PAIRS and tok.type != "RBRACE":
        if not stack or stack[-1].type == "LBRACE":
            return Diagnostic("E0106", f"unmatched `{tok.value}`", span,
                              f"remove it, or add the `{_OPEN_CHAR[_PAIRS[tok.type]]}` it closes")
        if stack[-1].type != _PAIRS[tok.type]:
            opener = stack[-1]
            return Diagnostic("E0106", f"`{tok.value}` does not close `{opener.value}`", span,
                              f"close it with `{_CLOSE_CHAR[opener.type]}`",
                              [(f"`{opener.value}` is opened here", _token_span(opener, source))])
    inner = next((t for t in reversed(stack) if t.type != "LBRACE"), None)
    if inner is not None and (tok is None or span.line > inner.line or tok.type == "RBRACE"):
        # a new line inside (...) or [...] does not end the statement, so the error surfaced late
        where = "the file ends here" if tok is None else f"expected `{_CLOSE_CHAR[inner.type]}` " \
                "or `,` before this"
        return Diagnostic("E0106", f"unclosed `{inner.value}`", _token_span(inner, source),
                          f"close it with `{_CLOSE_CHAR[inner.type]}`; inside (...) and [...] a "
                          "new line does not end a statement", [(where, span)])
    brace = next((t for t in reversed(stack) if t.type == "LBRACE"), None)
    if brace is not None and (tok is None or tok.type in ("MODEL", "BLOCK", "USE")):
        where = "the file ends here" if tok is None else "the next definition starts here"
        return Diagnostic("E0106", "unclosed `{`", _token_span(brace, source),
                          "end the body with `}`", [(where, span)])
    return None


_PAIRS = {"RPAR": "LPAR", "RSQB": "LSQB", "RBRACE": "LBRACE"}
_OPEN_CHAR = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
_CLOSE_CHAR = {"LPAR": ")", "LSQB": "]", "LBRACE": "}"}
_CLOSE_TYPE = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_KEYWORDS = {"USE", "CONST", "MODEL", "BLOCK", "INPUT", "IN", "OUT", "OR", "AND", "NOT", "TRUE",
             "FALSE", "FOR"}
_CHAR_HINTS = {"'": 'strings use double quotes: "..."', "\u2192": "write the arrow as `->`",
               "\u2013": "write a minus as `-`", "\u201c": 'strings use plain double quotes: "..."'}
# the order "expected ..." hints list tokens in; ones that only continue an expression are left out
_HINT_ORDER = ["COLON", "EQUAL", "COMMA", "RPAR", "RSQB", "LBRACE", "RBRACE", "NAME", "INT",
               "FLOAT", "STRING", "_NL", "$END"]
_VALUE_START = {"NAME", "INT", "FLOAT", "STRING", "LPAR", "LSQB", "MINUS", "NOT", "TRUE", "FALSE"}


def _expected_hint(expected) -> str | None:
    expected = {t for t in expected if not t.startswith("__")}
    if {"NAME", "INT"} <= expected:  # any expression may start here
        words = [w for w in (_TOKEN_WORDS.get(t) for t in _HINT_ORDER[:7] if t in expected) if w]
        words.append("a layer or value")
        words += [_TOKEN_WORDS[t] for t in ("_NL", "$END") if t in expected]
    else:
        words = [_TOKEN_WORDS[t] for t in _HINT_ORDER if t in expected]
        if not words:  # only tokens that continue an expression
            words = sorted(_TOKEN_WORDS.get(t, f"`{t.lower()}`") for t in expected
                           if t not in _VALUE_START and not t.startswith("_"))
    if not words:
        return None
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "expected " + (" or ".join(words) if len(words) <= 2 else
                          ", ".join(words[:-1]) + " or " + words[-1])
