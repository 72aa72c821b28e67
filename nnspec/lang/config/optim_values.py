"""Optimizer names and argument values, checked against the parameter table
(optim_table.py, generated from torch) instead of constructing the optimizer: constructing one
imports torch and torch._dynamo, seconds that `nnspec check` should not spend.

A value's type follows the parameter's default in the table (a number takes a number, a flag
true or false, a pair a pair of numbers); its range is the one the optimizer's __init__ refuses
(torch/optim/*.py raises ValueError or RuntimeError for these), so check refuses exactly what a
run would, before the run.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from nnspec.lang.config.optim_table import TORCH_OPTIMIZERS


class Rule(NamedTuple):
    test: Callable[[Any], bool]
    what: str
    classes: Optional[frozenset[str]] = None   # None: every optimizer with this parameter


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _at_least(lo: float) -> Callable[[Any], bool]:
    return lambda v: _number(v) and v >= lo


def _pair(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(map(test, v))


_ADAMS = frozenset({"Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SparseAdam"})

# parameter -> the ranges torch enforces (the classes that enforce them, when not all do)
RANGES: dict[str, list[Rule]] = {
    "lr": [Rule(_at_least(0), "a number >= 0")],
    "weight_decay": [Rule(_at_least(0), "a number >= 0")],
    "eps": [Rule(_at_least(0), "a number >= 0", frozenset(TORCH_OPTIMIZERS) - {"Adafactor"}),
            Rule(_pair(lambda v: v is None or _at_least(0)(v)),
                 "a pair (eps1, eps2) of numbers >= 0 (eps1 may be None)",
                 frozenset({"Adafactor"}))],
    "betas": [Rule(_pair(lambda v: _number(v) and 0 <= v < 1),
                   "a pair of numbers each in [0, 1)", _ADAMS)],
    "momentum": [Rule(_at_least(0), "a number >= 0", frozenset({"SGD", "RMSprop"}))],
    "alpha": [Rule(_at_least(0), "a number >= 0", frozenset({"RMSprop"}))],
    "lr_decay": [Rule(_at_least(0), "a number >= 0")],
    "initial_accumulator_value": [Rule(_at_least(0), "a number >= 0")],
    "momentum_decay": [Rule(_at_least(0), "a number >= 0")],
    "rho": [Rule(lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1",
                 frozenset({"Adadelta"}))],
    "etas": [Rule(lambda v: _pair(_number)(v) and 0 < v[0] < 1 < v[1],
                  "a pair (decrease, increase) with 0 < decrease < 1 < increase")],
    "beta2_decay": [Rule(lambda v: _number(v) and v <= 0, "a number <= 0")],
    "d": [Rule(_at_least(1), "a number >= 1", frozenset({"Adafactor"}))],
}

_FLAGS_OR_NONE = ("foreach", "fused")   # None lets torch pick the implementation


def optimizer_class_name(name: str) -> Optional[str]:
    """The torch.optim class a spec's optimizer name stands for (case-insensitive), or None."""
    wanted = name.lower()
    return next((cls for cls in TORCH_OPTIMIZERS if cls.lower() == wanted), None)


def optimizer_defaults(cls: str) -> dict[str, Any]:
    """Each argument of the optimizer after `params`, with its default."""
    return {p: default for p, _, default in TORCH_OPTIMIZERS[cls] if p != "params"}


def _type_rule(name: str, default: Any) -> Optional[Rule]:
    """What a value must be, judged from the parameter's default."""
    if isinstance(default, bool):
        return Rule(lambda v: isinstance(v, bool), "true or false")
    if _number(default):
        return Rule(_number, "a number")
    if isinstance(default, tuple):
        return Rule(lambda v: isinstance(v, (list, tuple)) and len(v) == len(default) and all(
            _number(x) or (x is None and d is None) for x, d in zip(v, default)),
            f"{len(default)} numbers, like the default {default!r}")
    if default is None and name in _FLAGS_OR_NONE:
        return Rule(lambda v: v is None or isinstance(v, bool), "true, false or None")
    return None


def value_problems(cls: str, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """(message, help) for each argument value the optimizer would refuse; `kwargs` name only
    arguments it has."""
    defaults = optimizer_defaults(cls)
    out = []
    for k, v in kwargs.items():
        rules = [_type_rule(k, defaults[k])] + [
            r for r in RANGES.get(k, ()) if r.classes is None or cls in r.classes]
        failed = next((r for r in rules if r is not None and not r.test(v)), None)
        if failed is not None:
            out.append((f"{k} must be {failed.what}, got {v!r}",
                        f"{cls}'s default is {k}={defaults[k]!r}"))
    if out:
        return out
    given = {**defaults, **kwargs}
    if cls == "SGD" and given["nesterov"] and (given["momentum"] <= 0 or given["dampening"]):
        out.append(("nesterov needs a momentum > 0 and dampening 0",
                    "set momentum (e.g. 0.9), or nesterov = false"))
    if given.get("fused") and given.get("differentiable"):
        out.append(("fused does not support differentiable", "drop one of them"))
    if given.get("fused") and given.get("foreach"):
        out.append(("fused and foreach cannot both be true", "drop one of them"))
    return out
