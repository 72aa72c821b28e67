"""One class for all the uses of a block: its numbers as expressions over constructor arguments,
and the structure only some uses have under an `if`.

Each use of a block comes from the IR with concrete numbers and its own statements (emit/source.py
writes them). The uses' statements are aligned (difflib over their shapes, emit/statements.py);
every number that differs is explained by an expression over the block's parameters and the
input sizes it was built for (emit/symbolic.py); statements that one group of uses has and
another has not go under a condition over the same arguments. Every expression and condition is
evaluated again for every use before the class is accepted, so the class, called with a use's
arguments, builds exactly that use. When the uses cannot share a class (more than two shapes of
structure), the caller splits them (emit/source.py says so in a comment).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from nnspec.emit.statements import LINE, Stmt, fill_defaults, fit, key, slots, split_comment
from nnspec.emit.symbolic import Expr, condition, explain, same

NUMBER_IN_TEXT = re.compile(r"(?<![\w.:/-])\d+(?![\w.])")


@dataclass
class Use:
    """One use of a block: its constructor arguments' values (block parameters first, then the
    input sizes), and its statements."""

    values: dict[str, object]
    init: list[Stmt]
    forward_args: str
    forward: list[Stmt]
    fixed: set[str] = field(default_factory=set)  # arguments that may not become free (root)


@dataclass
class Generic:
    args: list[str]                        # constructor arguments, in order
    init: list[str]                        # the lines of __init__'s body
    forward: list[str]                     # the lines of forward's body
    forward_args: str
    stored: dict[str, str] = field(default_factory=dict)   # argument -> self attribute
    used: set[str] = field(default_factory=set)            # arguments the class reads
    values: list[dict] = field(default_factory=list)       # each use's arguments


class Unfit(Exception):
    """The uses cannot share one class; `uses` are those that broke it (empty: all)."""

    def __init__(self, uses: set[int]):
        super().__init__("uses do not fit one class")
        self.uses = uses


def generalize(uses: list[Use], params: list[str], dims: list[str], taken: set[str],
               extra_ok: bool = True) -> Generic:
    """The class for `uses`. `params` are the block's parameters (always arguments), `dims`
    input sizes (arguments when an expression needs one); `taken` are attribute names in use."""
    shapes = {}
    for i, u in enumerate(uses):
        shape = (tuple(key(s) for s in u.init), tuple(key(s) for s in u.forward), u.forward_args)
        shapes.setdefault(shape, []).append(i)
    groups = list(shapes.values())
    if len(groups) > 2:
        raise Unfit(set())
    envs = [dict(u.values) for u in uses]
    bases = {a: [u.values[a] for u in uses] for a in params + dims
             if all(a in u.values for u in uses)}
    state = _State(uses, envs, bases, params, extra_ok)
    state.taken = set(taken) | {m.group(1) for u in uses for s in u.init
                                for m in [re.match(r"self\.(\w+)", s.code)] if m}
    if len(groups) == 1:
        init = [("same", list(zip(*[u.init for u in uses])), None)]
        forward = [("same", list(zip(*[u.forward for u in uses])), None)]
        members = list(range(len(uses)))
        init = state.regions(init, members, False)
        forward = state.regions(forward, members, True)
    else:
        a, b = groups
        if uses[a[0]].forward_args != uses[b[0]].forward_args:
            raise Unfit(set(b))
        init = _diff([uses[i].init for i in a], [uses[i].init for i in b])
        forward = _diff([uses[i].forward for i in a], [uses[i].forward for i in b])
        member = [i in a for i in range(len(uses))]
        known = _shared_exprs(uses, envs, bases, params, init + forward, a + b)
        tests = state.bases
        if not extra_ok:
            # the model: its uses are the spec's defaults and a few variants, which cannot tell
            # `p1 > 4` from `p1 != 1`; only a true/false parameter, seen both ways, decides
            known, tests = [], {k: v for k, v in tests.items()
                                if all(isinstance(x, bool) for x in v)}
        cond = condition(member, tests, envs, known)
        other = condition([not m for m in member], tests, envs, known)
        if other is not None and (cond is None or "==" in cond.text or " not " in cond.text):
            # the uses with more structure come first: `if stride != 1:`, as people write it
            a, b, cond = b, a, other
            init = _diff([uses[i].init for i in a], [uses[i].init for i in b])
            forward = _diff([uses[i].forward for i in a], [uses[i].forward for i in b])
            member = [i in a for i in range(len(uses))]
        if cond is None:
            cond = state.flag(init + forward, member)
        init = state.branches(init, a, b, cond, in_forward=False)
        forward = state.branches(forward, a, b, cond, in_forward=True)
    used = [d for d in dims if d in state.used]
    return Generic(params + used + state.extra, init, forward, uses[0].forward_args,
                   state.stored, state.used, state.envs)


def _shared_exprs(uses, envs, bases, params, regions, members) -> list[Expr]:
    """The expressions the statements that all uses share need: a condition may compare them
    (`in_channels != planes * 4`)."""
    dry = _State(uses, [dict(e) for e in envs], dict(bases), params, False)
    for kind, rows, _ in regions:
        for row in rows if kind == "same" else []:
            try:
                dry.row(list(row), members, False)
            except Unfit:
                pass
    return dry.known()


def _diff(a_uses: list[list[Stmt]], b_uses: list[list[Stmt]]):
    """Regions: ("same", rows over all uses, None) or ("branch", rows of A's uses, rows of B's)."""
    ka, kb = [key(s) for s in a_uses[0]], [key(s) for s in b_uses[0]]
    out = []
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        rows_a = [tuple(u[i] for u in a_uses) for i in range(i1, i2)]
        rows_b = [tuple(u[j] for u in b_uses) for j in range(j1, j2)]
        if tag == "equal":
            out.append(("same", [ra + rb for ra, rb in zip(rows_a, rows_b)], None))
        else:
            out.append(("branch", rows_a, rows_b))
    return out


class _State:
    def __init__(self, uses, envs, bases, params, extra_ok):
        self.uses, self.envs, self.bases, self.params = uses, envs, bases, params
        self.extra_ok = extra_ok
        self.extra: list[str] = []
        self.used: set[str] = set()
        self.found: list[tuple[Expr, dict]] = []   # expressions written: use -> value
        self.stored: dict[str, str] = {}
        self.taken: set[str] = set()   # attribute names a stored argument may not have

    def known(self) -> list[Expr]:
        return [e for e, _ in self.found]

    def flag(self, regions, member) -> Expr:
        """A boolean argument that picks the branch, named after the first child it adds."""
        if not self.extra_ok:  # the model: the variants built unlike its defaults are out
            raise Unfit({i for i, m in enumerate(member) if m != member[0]})
        names = [re.match(r"self\.(\w+)", s.code) for kind, rows, _ in regions
                 if kind == "branch" for row in rows for s in row[:1]]
        base = next((f"has_{m.group(1)}" for m in names if m), "variant")
        arg = self._new_arg(base, member)
        return Expr(arg, lambda env, a=arg: env[a])

    def _new_arg(self, base: str, values: list) -> str:
        arg, n = base, 1
        while arg in self.bases or arg in self.extra:
            n += 1
            arg = f"{base}_{n}"
        self.extra.append(arg)
        self.bases[arg] = list(values)
        for env, v in zip(self.envs, values):
            env[arg] = v
        self.used.add(arg)
        return arg

    def regions(self, regions, members: list[int], in_forward: bool) -> list[str]:
        lines = []
        for _, rows, _ in regions:
            for row in rows:
                lines += self.row(list(row), members, in_forward)
        return lines

    def branches(self, regions, a, b, cond: Expr, in_forward: bool) -> list[str]:
        lines = []
        test = self._text(cond, in_forward)
        for kind, rows_a, rows_b in regions:
            if kind == "same":
                for row in rows_a:
                    lines += self.row(list(row), a + b, in_forward)
                continue
            body_a = [x for row in rows_a for x in self.row(list(row), a, in_forward, 4)]
            body_b = [x for row in rows_b for x in self.row(list(row), b, in_forward, 4)]
            if body_a:
                lines.append(f"        if {test}:")
                lines += body_a
                if body_b:
                    lines.append("        else:")
                    lines += body_b
            else:
                lines.append(f"        if not ({test}):")
                lines += body_b
        self.used |= set(re.findall(r"\w+", cond.text)) & set(self.bases)
        return lines

    def row(self, stmts: list[Stmt], members: list[int], in_forward: bool, pad: int = 0):
        """The generic text of one aligned statement; `members` are the uses of `stmts`."""
        codes = fill_defaults([s.code for s in stmts])
        if codes is None or len({key(Stmt(0, c), loose=False) for c in codes}) != 1:
            raise Unfit({members[i] for i, c in enumerate(codes or []) if c != (codes or [""])[0]})
        envs = [self.envs[i] for i in members]
        bases = {a: [v[i] for i in members] for a, v in self.bases.items()}
        spots = [slots(c) for c in codes]
        code = codes[0]
        exprs: list[tuple[int, int, Expr]] = []
        for n, (start, end, value) in enumerate(spots[0]):
            values = [s[n][2] for s in spots]
            expr = self._explain(values, bases, envs, members, code[:start], value)
            if expr is not None:
                exprs.append((start, end, expr))
        for start, end, expr in reversed(exprs):
            bare = re.search(r"[(\[,=]\s*$", code[:start]) and re.match(r"\s*[,)\]]", code[end:])
            code = code[:start] + self._text(expr, in_forward, wrapped=not bare) + code[end:]
        comment = self._comment([s.comment for s in stmts], members)
        indent = " " * (stmts[0].indent + pad)
        if not code:
            return [indent + f"# {comment}"]
        code = fit(code.replace("\n", "\n" + " " * pad), len(indent))
        last = (indent + code).split("\n")[-1]
        if not comment:
            return [indent + code]
        if len(last) + 4 + len(comment) > LINE:  # the pointer goes above the statement
            return [indent + f"# {comment}", indent + code]
        return [indent + code + f"  # {comment}"]

    def _explain(self, values, bases, envs, members, before: str, value) -> Expr | None:
        constant = all(v == values[0] for v in values)
        if constant:
            # a number every use shares stays a number, unless a block parameter gives it
            # an argument that differs between the uses, but not between these (a branch's)
            varying = [a for a in self.params if a in bases and same(bases[a], values)
                       and len(set(map(repr, self.bases[a]))) > 1]
            if varying:
                expr = Expr(varying[0], lambda env, a=varying[0]: env[a])
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(value, int) and value < 4):
                return None
            elif not self.extra_ok:
                return None  # the model: a number its parameters' variants leave alone
            else:
                params = {a: v for a, v in bases.items() if a in self.params}
                expr = explain(values, params, envs, constants=False)
        else:
            expr = explain(values, bases, envs)
            if expr is None:
                if not self.extra_ok:
                    raise Unfit({m for m, v in zip(members, values) if v != values[0]})
                word = re.search(r"(\w+)=\s*$", before) or re.search(r"self\.(\w+)", before)
                arg = self._new_arg(word.group(1) if word else "size", [None] * len(self.uses))
                for m, v in zip(members, values):
                    self.envs[m][arg] = v
                    self.bases[arg][m] = v
                expr = Expr(arg, lambda env, a=arg: env[a])
        if expr is not None:
            if not same([expr.fn(env) for env in envs], values):
                raise Unfit(set(members))  # never: explain() checked every use
            self.used |= set(re.findall(r"\w+", expr.text)) & set(self.bases)
            self.found.append((expr, dict(zip(members, values))))
        return expr

    def _text(self, expr: Expr, in_forward: bool, wrapped: bool = False) -> str:
        text = expr.wrapped() if wrapped else expr.text
        if not in_forward:
            return text

        def attr(m):
            arg = m.group(0)
            if arg not in self.bases:
                return arg
            if arg not in self.stored:
                attr = arg
                while attr in self.taken or attr in self.stored.values():
                    attr += "_"
                self.stored[arg] = attr
            return f"self.{self.stored[arg]}"
        return re.sub(r"\b[A-Za-z_]\w*\b", attr, text)

    def _comment(self, comments: list[str], members: list[int]) -> str:
        """The uses' comments, with each number that differs between them written as the
        argument or expression that gives it (`?` when none does)."""
        parts = [NUMBER_IN_TEXT.split(c) for c in comments]
        if len({tuple(p) for p in parts}) != 1:
            return comments[0]
        numbers = [[int(n) for n in NUMBER_IN_TEXT.findall(c)] for c in comments]
        out = [parts[0][0]]
        for n in range(len(numbers[0])):
            values = [row[n] for row in numbers]
            text = str(values[0])
            if any(v != values[0] for v in values):
                names = [a for a, vs in self.bases.items()
                         if same([vs[m] for m in members], values)]
                names += [e.text for e, got in self.found
                          if all(got.get(m) == v for m, v in zip(members, values))]
                text = names[0] if names else "?" if self.extra_ok else str(values[0])
            out += [text, parts[0][n + 1]]
        return "".join(out)


__all__ = ["Use", "Generic", "Unfit", "generalize", "split_comment"]
