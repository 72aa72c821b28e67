"""Expressions over a generated class's constructor arguments, found from the values the block's
uses in the spec take.

A block is elaborated once per use, with concrete numbers. To write one class for all its uses,
each number that differs between uses is explained as a small expression over the class's
arguments (`planes`, `bn_size * growth`, `in_channels // 2`), and each piece of structure that
only some uses have (a downsample branch) as a condition (`stride != 1 or in_channels != planes`).
An expression is only accepted when it gives every use's value: emit/generic.py checks it again
for every use before it writes the class. The text of an expression is built here from argument
names (checked identifiers) and integers only, never from spec text.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Callable


@dataclass(frozen=True)
class Expr:
    """`text` is Python source over argument names; `fn` computes it from their values."""

    text: str
    fn: Callable[[dict], object]
    atomic: bool = True  # needs no parentheses inside a larger expression

    def wrapped(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def name(arg: str) -> Expr:
    return Expr(arg, lambda env: env[arg])


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _product(a: Expr, b: Expr) -> Expr:
    return Expr(f"{a.wrapped()} * {b.wrapped()}", lambda env: a.fn(env) * b.fn(env), False)


def _floordiv(a: Expr, k: int) -> Expr:
    return Expr(f"{a.wrapped()} // {k}", lambda env: a.fn(env) // k, False)


def _plus(a: Expr, b: Expr, sign: str) -> Expr:
    if sign == "+":
        return Expr(f"{a.text} + {b.wrapped()}", lambda env: a.fn(env) + b.fn(env), False)
    return Expr(f"{a.text} - {b.wrapped()}", lambda env: a.fn(env) - b.fn(env), False)


def _const(k) -> Expr:
    return Expr(repr(k), lambda env: k)


def explain(values: list, bases: dict[str, list], envs: list[dict],
            constants: bool = True) -> Expr | None:
    """The simplest expression over `bases` (argument name -> its value in each use) that gives
    `values` in every use, or None. Without `constants` the values are the same in every use,
    which says little: only an expression over the arguments alone that is the only one that
    fits is taken (a use's `num_layers=12, num_heads=12` explains no 12)."""
    if not constants:
        return _only(values, bases, envs)
    for arg, vec in bases.items():
        if same(vec, values):
            return name(arg)
    if not all(_is_int(v) for v in values):
        return None
    ints = {a: v for a, v in bases.items() if all(_is_int(x) for x in v)}
    candidates: list[Expr] = []
    for a, b in permutations(ints, 2):
        candidates += [_product(name(a), name(b)), _plus(name(a), name(b), "+"),
                       _plus(name(a), name(b), "-")]
    for arg, vec in ints.items():
        k = _ratio(vec, values)
        if k is not None:
            candidates.append(_product(name(arg), _const(k)) if k > 1 else name(arg))
        k = _ratio(values, vec)
        if k is not None and k > 1:
            candidates.append(_floordiv(name(arg), k))
    for arg, vec in ints.items():
        k = values[0] - vec[0]
        if k:
            candidates.append(_plus(name(arg), _const(abs(k)), "+" if k > 0 else "-"))
    return _first(candidates, values, envs)


def _only(values: list, bases: dict[str, list], envs: list[dict]) -> Expr | None:
    if values[0] in (0, 1) or isinstance(values[0], bool):
        return None
    candidates = [name(a) for a in bases]
    ints = [a for a, v in bases.items() if all(_is_int(x) for x in v)]
    if all(_is_int(v) for v in values):
        for a, b in permutations(ints, 2):
            if a < b:
                candidates += [_product(name(a), name(b)), _plus(name(a), name(b), "+")]
            candidates.append(_plus(name(a), name(b), "-"))
    fits = [e for e in candidates if same([e.fn(env) for env in envs], values)]
    return fits[0] if len(fits) == 1 else None


def same(a: list, b: list) -> bool:
    """Equal values of the same types: `True` is not the number 1 here."""
    return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b))


def _first(candidates: list[Expr], values: list, envs: list[dict]) -> Expr | None:
    for expr in candidates:
        if same([expr.fn(env) for env in envs], values):
            return expr
    return None


def _ratio(small: list, big: list) -> int | None:
    """k with big == small * k in every use (small nonzero), else None."""
    if not small or any(s == 0 for s in small) or big[0] % small[0]:
        return None
    k = big[0] // small[0]
    return k if k >= 1 and all(s * k == b for s, b in zip(small, big)) else None


def condition(member: list[bool], bases: dict[str, list], envs: list[dict],
              known: list[Expr]) -> Expr | None:
    """A condition over the arguments (and the expressions `known` already in the class) that is
    true in exactly the uses marked in `member`: `stride != 1`, `a != b`, or two of those joined
    by `or` / `and`, as torchvision writes its downsample test."""
    atoms: list[Expr] = []
    quantities = [name(a) for a, v in bases.items() if all(_is_int(x) for x in v)]
    quantities += [e for e in known if e.text not in {q.text for q in quantities}]
    for arg, vec in bases.items():
        if all(isinstance(x, bool) for x in vec):
            atoms += [name(arg), Expr(f"not {arg}", lambda env, a=arg: not env[a], False)]
    quantities = [q for q in quantities if _ints(q, envs)]
    for q in quantities:
        values = sorted({q.fn(env) for env in envs})
        for k in values[:4]:
            atoms.append(_compare(q, _const(k), "!="))
            atoms.append(_compare(q, _const(k), "=="))
    for a, b in permutations(quantities, 2):
        if a.text < b.text:
            atoms.append(_compare(a, b, "!="))
    hits = [(atom, [bool(atom.fn(env)) for env in envs]) for atom in atoms]
    for atom, got in hits:
        if got == member:
            return atom
    for i, (a, got_a) in enumerate(hits):
        for b, got_b in hits[i + 1:]:
            if [x or y for x, y in zip(got_a, got_b)] == member:
                return Expr(f"{a.text} or {b.text}",
                            lambda env, a=a, b=b: bool(a.fn(env) or b.fn(env)), False)
    return None


def _ints(q: Expr, envs: list[dict]) -> bool:
    """Whether `q` is an integer in every use (an argument only some uses have is not)."""
    try:
        return all(_is_int(q.fn(env)) for env in envs)
    except (TypeError, KeyError):
        return False


def _compare(a: Expr, b: Expr, op: str) -> Expr:
    if op == "!=":
        return Expr(f"{a.text} != {b.text}", lambda env: a.fn(env) != b.fn(env), False)
    return Expr(f"{a.text} == {b.text}", lambda env: a.fn(env) == b.fn(env), False)
