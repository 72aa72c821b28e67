"""Check: elaborate the chosen model into the IR, inferring every shape and validating every layer.

Elaboration runs the spec's statements symbolically: values are numbers, strings, tensor types
(never data) and layer templates. Blocks are instantiated with concrete arguments and input types,
repeats expanded, `when` conditions decided, and each layer's arguments validated by its Pydantic
model. Nothing is allocated: a model of billions of parameters checks in milliseconds, and one over
the parameter limit is refused as soon as its running total passes it.

The pieces, each readable alone:
  values.py       the values of elaboration, the scope, the limits, how diagnostics name a value
  templates.py    layers not yet applied (a kind with arguments, a block call, a list, a repeat)
  context.py      the program, the diagnostics and the block call stack that every piece shares
  expressions.py  Evaluator: expressions to values, tensors and templates
  functions.py    the builtin functions (channels, size, ndim, min, max, int, float)
  elaborate.py    Elaborator: statements run, templates applied, blocks and lists instantiated
  apply.py        LayerApplier: one layer kind validated, its shapes inferred, its op recorded
  ledger.py       ParamLedger: parameter and operation totals, the limits, `tie=` and reuse
This module is the entry: `check` elaborates a program's model, `const_values` its constants.
"""
from __future__ import annotations

from typing import Any

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Reporter, Span, did_you_mean
from nnspec.ir import ModuleDef, hoist_ties, verify_identities
from nnspec.layers import T
from nnspec.ir.lower import name_children
from nnspec.lang.resolve import Program
from nnspec.lang.check.context import Context
from nnspec.lang.check.elaborate import Elaborator
from nnspec.lang.check.values import Abort
from nnspec.lang.gc_pause import pauses_collection

DEFAULT_MAX_PARAMS = 10_000_000_000


@pauses_collection  # it builds a large graph of live objects: see gc_pause.py
def check(program: Program, model: str | None = None, overrides: dict[str, Any] | None = None,
          max_params: int = DEFAULT_MAX_PARAMS) -> ModuleDef:
    """Elaborate the root model of `program` into the IR; raises SpecError with every error."""
    ctx = Context(program)
    return _elaborated(ctx, _pick_model(program, model, ctx.reporter), overrides, None, max_params)


def check_block(program: Program, block: str, overrides: dict[str, Any] | None,
                inputs: list[T], max_params: int = DEFAULT_MAX_PARAMS) -> ModuleDef:
    """Elaborate a block as a model of its own whose inputs have the types `inputs` (an ensemble
    member that is a block takes the spec's model's inputs); raises SpecError."""
    ctx = Context(program)
    defn = program.definitions[block]
    return _elaborated(ctx, defn, overrides, inputs, max_params)


def _elaborated(ctx: Context, defn: S.Definition, overrides: dict[str, Any] | None,
                inputs: list[T] | None, max_params: int) -> ModuleDef:
    try:
        root = Elaborator(ctx, max_params).check_model(defn, dict(overrides or {}), inputs)
    except Abort:
        root = None
    except RecursionError:  # a last resort: parsing bounds nesting, but nested blocks multiply it
        ctx.reporter.error("E0502", f"`{defn.name}` nests too deeply to check", defn.span,
                           "use fewer levels of blocks, or split long expressions")
        root = None
    ctx.reporter.check()
    assert root is not None
    verify_identities(root)
    name_children(root)
    hoist_ties(root)
    return root


def _pick_model(program: Program, name: str | None, reporter: Reporter) -> S.Definition:
    if name is not None:
        defn = program.definitions.get(name)
        if defn is None or not defn.is_model:
            models = [d.name for d in program.definitions.values() if d.is_model]
            reporter.error("E0210", f"no model named `{name}`", None,
                           did_you_mean(name, models) or f"models: {', '.join(models) or '(none)'}")
            reporter.check()
        return defn
    if len(program.root_models) == 1:
        return program.root_models[0]
    if not program.root_models:
        blocks = [d for d in program.definitions.values() if d.span.source is program.root_source]
        src = program.root_source
        reporter.error("E0210", f"`{program.root}` defines no model",
                       blocks[0].span if blocks else Span(src, 1, 1, 1, 2) if src else None,
                       "a spec needs a `model NAME { ... }`" + (
                           "; blocks are only built when a model uses them" if blocks else ""))
    else:
        names = ", ".join(d.name for d in program.root_models)
        reporter.error("E0210", f"`{program.root}` defines several models ({names})",
                       program.root_models[1].span, "choose one with --model NAME")
    reporter.check()
    raise AssertionError("unreachable")


def const_values(program: Program) -> dict[str, Any]:
    """Every top-level constant of the program, evaluated (for the train/parallel sections)."""
    ctx = Context(program)
    evaluator = Elaborator(ctx, DEFAULT_MAX_PARAMS).expr
    values = {}
    for name, node in program.consts.items():
        try:
            values[name] = evaluator.global_const(name, node.span)
        except Abort:
            pass
    ctx.reporter.check()
    return values
