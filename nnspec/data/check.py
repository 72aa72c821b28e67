"""Check a train section against its data: the data set's name and arguments, the model's inputs
(how many, shapes, dtypes), and its output against the loss (label shape, number of classes).

The facts come from `datameta` (headers and constants, never the data itself); the rules,
from `datafit`, are the ones the loaders apply, so `nnspec check` refuses exactly the data that `nnspec train` would
refuse, located at the train section's `data` setting instead of as a run-time error.
"""
from __future__ import annotations

from pathlib import Path

from nnspec.lang import syntax as S
from nnspec.lang.config import LOSS_TARGETS
from nnspec.data.fit import NOT_INPUT, NOT_OUTPUT, DataProblem, Port, Want, describe, fit_problems
from nnspec.data.meta import read_meta, unknown_data_set
from nnspec.lang.diagnostics import Reporter, Span
from nnspec.ir import ModuleDef
from nnspec.lang.resolve import Program
from nnspec.lang.sections import Settings


def check_data(ir: ModuleDef | None, program: Program, settings: Settings, reporter: Reporter,
               base: Path | None = None) -> None:
    """Report (E0730-E0733) every way the train section's data cannot feed the model `ir`.

    Args:
        ir: the checked model; None when it has errors: then only the data set's name is checked.
        base: where relative data paths start; train reads them from the working directory.
    """
    train = settings.train
    where = settings.span_of("train", "data")
    if ir is None or not ir.outputs:
        unknown = unknown_data_set(train.data)
        if unknown is not None:
            reporter.error(unknown.code, unknown.message, where, unknown.hint)
        return
    inputs = [Port(name, tuple(v.type.shape), v.type.dtype)
              for name, v in zip(ir.input_names, ir.inputs)]
    out = ir.outputs[0].type
    want = Want(inputs, Port("output", tuple(out.shape), out.dtype),
                LOSS_TARGETS.get(train.loss.name), train.split, base or Path.cwd(),
                describe(train.data))
    try:
        meta = read_meta(train.data, want)
        problems = fit_problems(meta, want) if meta is not None else []
    except DataProblem as problem:
        problems = [problem]
    declared = _input_spans(program, ir.name)
    made = _output_span(ir)
    for p in problems:
        notes = []
        if p.code == NOT_INPUT:
            notes = [(f"input `{port.name}` is declared here", declared[port.name])
                     for port in inputs if f"`{port.name}`" in p.message and port.name in declared]
        elif p.code == NOT_OUTPUT and made is not None:
            notes = [(f"the model's output {list(want.output.shape)} is made here", made)]
        reporter.error(p.code, p.message, where, p.hint, notes)


def _output_span(ir: ModuleDef) -> Span | None:
    """The step of the forward pass that makes the model's (first) output."""
    out = ir.outputs[0]
    return next((op.span for op in reversed(ir.ops) if any(v is out for v in op.outs)), None)


def _input_spans(program: Program, model: str) -> dict[str, Span]:
    """Where each input of the root model is declared, for notes under input misfits."""
    defn = program.definitions.get(model)
    found: dict[str, Span] = {}
    for node in defn.body if defn is not None else ():
        decls = node.decls if isinstance(node, S.Inputs) else (node,) if isinstance(
            node, S.InputDecl) else ()
        for decl in decls:
            found.setdefault(decl.name, decl.span)
    return found
