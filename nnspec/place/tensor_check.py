"""What `check` says about `parallel { tensor = N }` once the model is known: an attention whose
heads do not divide by N is an error (E0713, located at the setting, with a note at the layer),
and the layers that stay whole on every rank are one warning that lists them, grouped by why.
Torch-free."""
from __future__ import annotations

import re
from math import gcd

from nnspec.ir import ModuleDef
from nnspec.lang.diagnostics import Diagnostic, Reporter
from nnspec.lang.sections import Settings
from nnspec.place.tensor import TensorPlan, head_counts, tensor_plan

MAX_GROUPS = 12  # notes in the warning; the rest are counted


def check_tensor(ir: ModuleDef, settings: Settings, reporter: Reporter) -> list[Diagnostic]:
    """Report the attention layers `tensor` cannot split (errors); return the warning that lists
    the layers it keeps whole (empty when it splits everything with parameters)."""
    n = settings.parallel.tensor
    plan = tensor_plan(ir, n)
    where = settings.span_of("parallel", "tensor")
    if plan.indivisible:
        counts = head_counts(ir)
        common = 0
        for c in counts:
            common = gcd(common, c)
        fits = [d for d in range(1, common + 1) if common % d == 0]
        by_reason: dict[str, list[str]] = {}
        for path, why in plan.indivisible.items():
            by_reason.setdefault(why, []).append(path)
        for why, paths in by_reason.items():
            names = _names(paths)
            reporter.error("E0713", f"{why}: {names}", where,
                           f"set tensor to a number that divides every attention's heads"
                           f"{' and key/value heads' if len(counts) > 1 else ''}: "
                           f"{', '.join(map(str, fits))}",
                           notes=[(f"`{paths[0]}`" + (", the first of them," if len(paths) > 1
                                                      else "") + " is here",
                                   plan.spans.get(paths[0]))])
        return []
    if not plan.replicated:
        return []
    return [Diagnostic("W0713", _summary(plan), where, "layers kept whole cost their full "
                       "memory on every rank; the split ones 1/" + str(n),
                       [(line, None) for line in grouped(plan.replicated)], severity="warning")]


def _names(paths: list[str]) -> str:
    """`transformer.h.*.ln_1`, `transformer.ln_f` (13 layers): the numbers of list items and of
    repeated blocks (`encoder_layer_3`) fold into `*`; a layer's own name is kept."""
    patterns: dict[str, None] = {}
    for path in paths:
        *parents, last = path.split(".")
        patterns[".".join([re.sub(r"\d+$", "*", p) for p in parents] + [last])] = None
    names = ", ".join(f"`{p}`" for p in patterns)
    return names + (f" ({len(paths)} layers)" if len(paths) > 1 else "")


def _summary(plan: TensorPlan) -> str:
    kept = len(plan.replicated)
    return (f"tensor {plan.n} splits {len(plan.splits)} layer{'s' * (len(plan.splits) != 1)} "
            f"and keeps {kept} whole on every rank")


def grouped(replicated: dict[str, str]) -> list[str]:
    """`transformer.h.*.ln_1`, `transformer.ln_f` (13 layers): layernorm: ...`, one line per
    reason, in model order."""
    by_reason: dict[str, list[str]] = {}
    for path, why in replicated.items():
        by_reason.setdefault(why, []).append(path)
    lines = [f"{_names(paths)}: {why}" for why, paths in by_reason.items()]
    if len(lines) > MAX_GROUPS:
        rest = len(lines) - MAX_GROUPS + 1
        lines = lines[:MAX_GROUPS - 1] + [f"... and {rest} more reasons"]
    return lines
