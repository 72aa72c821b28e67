"""Check: elaborate the chosen model into the IR, inferring every shape and validating every layer.

Elaboration runs the spec's statements symbolically: values are numbers, strings, tensor types
(never data) and layer templates. Blocks are instantiated with concrete arguments and input types,
repeats expanded, `when` conditions decided, and each layer's arguments validated by its Pydantic
model. Nothing is allocated: a model of billions of parameters checks in milliseconds, and one over
the parameter limit is refused as soon as its running total passes it.
"""
from __future__ import annotations

import copy
import functools
import keyword
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Reporter, SpecError, Span, did_you_mean
from nnspec.ir import (
    Leaf, ModuleDef, Op, Seq, Value, child_ins, clone, count_params, verify_identities
)
from nnspec.layers import REGISTRY, Layer, ShapeError, T, fmt_shape
from nnspec.layers.base import numel
from nnspec.ir.lower import name_children
from nnspec.lang.resolve import Program

DEFAULT_MAX_PARAMS = 10_000_000_000
MAX_REPEAT = 10_000
MAX_OPS = 200_000
MAX_DEPTH = 64
MAX_INT = 2 ** 62
DTYPES = {"float": "float", "long": "long", "int": "long", "bool": "bool"}


class _Abort(Exception):
    """Unwinds one statement after its error has been reported (or silently for a poisoned value)."""


class _Poison:
    """Stands for a value whose statement failed, so later uses do not report again."""


POISON = _Poison()


# ---- values of the elaboration ------------------------------------------------------------
@dataclass(eq=False)
class Template:
    """A layer not yet applied: a layer kind or block with arguments, a list, or a repeat."""

    span: Span
    bound: list[Value] = field(default_factory=list)        # tensors given positionally
    bound_kw: dict[str, Value] = field(default_factory=dict)  # tensors given by keyword


@dataclass(eq=False)
class KindT(Template):
    cls: type[Layer] = None  # type: ignore[assignment]
    pos: list[tuple[Any, Span]] = field(default_factory=list)
    kw: dict[str, tuple[Any, Span]] = field(default_factory=dict)
    tie: tuple["ModRef", Span] | None = None


@dataclass(eq=False)
class BlockT(Template):
    defn: S.Definition = None  # type: ignore[assignment]
    pos: list[tuple[Any, Span]] = field(default_factory=list)
    kw: dict[str, tuple[Any, Span]] = field(default_factory=dict)


@dataclass(eq=False)
class SeqT(Template):
    items: list[Template] = field(default_factory=list)


@dataclass(eq=False)
class RepeatT(Template):
    item: Template = None  # type: ignore[assignment]
    count: int = 1


@dataclass(eq=False)
class NamedT(Template):
    name: str = ""
    name_span: Span = None  # type: ignore[assignment]
    item: Template = None  # type: ignore[assignment]


@dataclass(eq=False)
class ModRef(Template):
    """An existing child module, by name: applying it again shares its weights."""

    path: list[str] = field(default_factory=list)
    child: Any = None
    scope: "Scope" = None  # type: ignore[assignment]


@dataclass(eq=False)
class Builtin:
    name: str


BUILTINS = {"channels", "size", "ndim", "min", "max", "int", "float"}


# ---- scopes -------------------------------------------------------------------------------
@dataclass(eq=False)
class Scope:
    module: ModuleDef
    params: dict[str, Any]
    locals: dict[str, Any] = field(default_factory=dict)    # constants and tensors by name
    layers: dict[str, Any] = field(default_factory=dict)    # named children by name
    cursor: Any = None
    read: set[int] = field(default_factory=set)              # ids of tensors read by name
    instantiated_at: list[tuple[str, Span]] = field(default_factory=list)


class Checker:
    def __init__(self, program: Program, max_params: int):
        self.program = program
        self.max_params = max_params
        self.reporter = Reporter()
        self.params_total = 0
        self.ops = 0
        self.cache: dict[Any, ModuleDef] = {}
        self.cache_cost: dict[Any, tuple[int, int]] = {}  # per cached block: (params, ops) it adds
        self.const_values: dict[str, Any] = {}
        self.const_busy: set[str] = set()
        self.stack: list[tuple[str, Span]] = []

    # ---- reporting -------------------------------------------------------------------------
    def error(self, code: str, message: str, span: Span, help: str | None = None,
              notes: list | None = None) -> _Abort:
        notes = list(notes or [])
        for name, where in reversed(self.stack):
            if not _within(span, where):  # a note that repeats the error's own place is noise
                notes.append((f"in `{name}`, used here", where))
        self.reporter.error(code, message, span, help, notes[:6])
        return _Abort()

    # ---- entry -----------------------------------------------------------------------------
    def check_model(self, defn: S.Definition, overrides: dict[str, Any]) -> ModuleDef:
        params = self.bind_params(defn, [], {k: (v, defn.span) for k, v in overrides.items()},
                                  defn.span, from_cli=True)
        module = ModuleDef(defn.name, _signature(defn.name, params), defn.span)
        scope = Scope(module, params)
        self.run_body(defn, scope, inputs=None)
        return module

    # ---- parameters ------------------------------------------------------------------------
    def bind_params(self, defn: S.Definition, pos, kw, span, from_cli=False) -> dict[str, Any]:
        names = [p.name for p in defn.params]
        if len(pos) > len(names):
            raise self.error("E0302", f"`{defn.name}` takes {len(names)} argument"
                             f"{'s' if len(names) != 1 else ''}, got {len(pos)}",
                             pos[len(names)][1] if not from_cli else span,
                             f"its parameters are: {', '.join(names) or '(none)'}")
        values: dict[str, Any] = {}
        for (value, vspan), name in zip(pos, names):
            values[name] = value
        for name, (value, vspan) in kw.items():
            if name not in names:
                raise self.error("E0301", f"`{defn.name}` has no parameter `{name}`", vspan,
                                 did_you_mean(name, names) or
                                 f"its parameters are: {', '.join(names) or '(none)'}")
            if name in values:
                raise self.error("E0303", f"parameter `{name}` given twice", vspan)
            values[name] = value
        scope = Scope(ModuleDef(defn.name, "", defn.span), {})
        for p in defn.params:
            if p.name not in values:
                if p.default is None:
                    if from_cli:
                        raise self.error("E0304", f"`{defn.name}` needs a value for `{p.name}`",
                                         p.span, f"give it a default, `{p.name} = ...`, or set it "
                                         f"on the command line: --set {p.name}=...")
                    raise self.error("E0304", f"`{defn.name}` needs a value for `{p.name}`", span,
                                     f"pass it as {p.name}=...")
                scope.params = values  # defaults may refer to earlier parameters
                values[p.name] = self.value(self.eval(p.default, scope), p.default.span)
        return values

    # ---- bodies ----------------------------------------------------------------------------
    def run_body(self, defn: S.Definition, scope: Scope, inputs: list[Value] | None) -> None:
        """Run a definition's statements in `scope`; `inputs` are given for a block call."""
        module = scope.module
        declared: list[tuple[S.InputDecl, Span]] = []
        for stmt in defn.body:
            if isinstance(stmt, S.Inputs):
                for decl in stmt.decls:
                    declared.append((decl, decl.span))
        if not declared:
            raise self.error("E0207", f"`{defn.name}` has no inputs", defn.span,
                             "declare them first: `input x: float[3, 32, 32]` in a model, `in x` "
                             "in a block")
        if inputs is not None and len(inputs) != len(declared):
            raise self.error("E0305", f"`{defn.name}` takes {len(declared)} input tensor"
                             f"{'s' if len(declared) != 1 else ''}, got {len(inputs)}",
                             self.stack[-1][1] if self.stack else defn.span,
                             help="the tensors a block is given (the flow's, then those in its "
                             "arguments) fill its `in` declarations in order",
                             notes=[(f"`{defn.name}` declares its inputs here",
                                     declared[0][1] if declared else defn.span)])
        outputs_seen = False
        errors_before = len(self.reporter.diagnostics)
        results: list[tuple[S.ExprStmt, list[Value]]] = []  # what each expression statement made
        for stmt in defn.body:
            try:
                if isinstance(stmt, S.Inputs):
                    for decl in stmt.decls:
                        self.declare_input(decl, scope, inputs, defn)
                elif isinstance(stmt, S.Outputs):
                    if outputs_seen:
                        raise self.error("E0206", "outputs declared twice", stmt.span,
                                         "list every output in one `out` statement")
                    outputs_seen = True
                    module.outputs = [self.tensor(self.force(self.eval(v, scope), scope), v.span)
                                      for v in stmt.values]
                elif isinstance(stmt, S.Const):
                    self.bind_local(scope, stmt.name, self.value(self.eval(stmt.value, scope),
                                                                 stmt.value.span), stmt.span)
                elif isinstance(stmt, S.Assign):
                    self.assign(stmt, scope)
                elif isinstance(stmt, S.ExprStmt):
                    cursor = scope.cursor
                    ops_before = len(module.ops)
                    result = self.statement_value(
                        stmt.value, scope, hint=cursor.hint if isinstance(cursor, Value) else None)
                    if result is not None:
                        scope.cursor = result
                        made = {id(v) for op in module.ops[ops_before:] for v in op.outs}
                        values = list(result) if isinstance(result, tuple) else [result]
                        results.append((stmt, [v for v in values if id(v) in made]))
            except _Abort:
                for name in _names_defined(stmt):
                    if name not in scope.layers:
                        scope.locals[name] = POISON
                scope.cursor = POISON
        if not outputs_seen:
            if scope.cursor is POISON:
                raise _Abort()
            module.outputs = [self.tensor(scope.cursor, defn.span)]
        if any(o is POISON for o in module.outputs):
            raise _Abort()
        if len(self.reporter.diagnostics) == errors_before:  # a failed use would look like none
            self.check_used(results, scope)

    def check_used(self, results: list[tuple[S.ExprStmt, list[Value]]], scope: Scope) -> None:
        """An expression statement whose tensor nothing reads is an error: it is most often a line
        meant to continue the one above it, and it would compute something and throw it away."""
        module = scope.module
        read = set(scope.read) | {id(v) for v in module.outputs}
        for op in module.ops:
            read.update(id(v) for v in op.args)
            read.update(id(v) for v in op.kwargs.values())
        seqs = [c for _, c in module.children if isinstance(c, Seq)]
        while seqs:  # tensors passed to list items (a mask) are read there
            seq = seqs.pop()
            read.update(id(v) for extra in seq.extras for v in extra)
            seqs += [c for c in seq.items if isinstance(c, Seq)]
        for stmt, values in results:
            if values and not any(id(v) in read for v in values):
                self.error("E0333", "the result of this statement is never used", stmt.span,
                           "assign it (`h = ...`) and use it, list it in `out`, or delete the line")

    def declare_input(self, decl: S.InputDecl, scope: Scope, inputs, defn: S.Definition) -> None:
        module = scope.module
        if decl.name in scope.locals:
            first = next((d for st in defn.body if isinstance(st, S.Inputs) for d in st.decls
                          if d.name == decl.name), decl)
            raise self.error("E0205", f"input `{decl.name}` declared twice", decl.span,
                             "give each input its own name",
                             [("first declared here", first.span)] if first is not decl else [])
        if inputs is None:
            if decl.type is None:
                raise self.error("E0306", f"model input `{decl.name}` needs a type", decl.span,
                                 f"write e.g. `input {decl.name}: float[3, 32, 32]` "
                                 "(per-sample shape; the batch is implicit)")
            t = self.tensor_type(decl.type, scope)
        else:
            t = inputs[len(module.inputs)].type
            if decl.type is not None:
                want = self.tensor_type(decl.type, scope)
                if want != t:
                    raise self.error("E0401", f"input `{decl.name}` of `{defn.name}` expects "
                                     f"{want}, got {t}", decl.span)
        value = Value(t, decl.name)
        module.inputs.append(value)
        module.input_names.append(decl.name)
        scope.locals[decl.name] = value
        scope.cursor = value

    def tensor_type(self, node: S.Node, scope: Scope) -> T:
        if not (isinstance(node, S.Index) and isinstance(node.target, S.Name)
                and node.target.id in DTYPES):
            raise self.error("E0306", "expected a tensor type such as `float[3, 224, 224]`",
                             node.span, "types are float, long, int or bool with a per-sample "
                             "shape in brackets")
        dims = []
        for item in node.items:
            v = self.value(self.eval(item, scope), item.span)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise self.error("E0307", f"a dimension must be a positive integer, got {_show(v)}",
                                 item.span)
            dims.append(v)
        return T(tuple(dims), DTYPES[node.target.id])

    def assign(self, stmt: S.Assign, scope: Scope) -> None:
        result = self.statement_value(stmt.value, scope, hint=stmt.names[0])
        if result is None:
            raise self.error("E0308", "nothing to assign: the condition is false and there is no "
                             "input to pass through", stmt.value.span)
        if len(stmt.names) == 1:
            self.bind_local(scope, stmt.names[0], result, stmt.span)
            scope.cursor = result
            return
        parts = result if isinstance(result, tuple) else None
        if parts is None or len(parts) != len(stmt.names):
            got = len(parts) if parts is not None else 1
            raise self.error("E0309", f"cannot unpack {got} value{'s' if got != 1 else ''} into "
                             f"{len(stmt.names)} names", stmt.span,
                             f"write {got} name{'s' if got != 1 else ''} before `=`")
        for name, part in zip(stmt.names, parts):
            if isinstance(part, Value):
                part.hint = name
            self.bind_local(scope, name, part, stmt.span)
        scope.cursor = parts[-1]

    def bind_local(self, scope: Scope, name: str, value: Any, span: Span) -> None:
        if name in scope.layers:
            raise self.error("E0205", f"`{name}` already names a layer in this block", span)
        if isinstance(value, Value) and value.hint != name and not any(
                value is v for v in scope.module.inputs):
            value.hint = name
        scope.locals[name] = value

    def statement_value(self, node: S.Node, scope: Scope, hint: str | None = None):
        """A statement's expression: a template applies to the cursor; a tensor is the result."""
        if isinstance(node, S.When):
            if not self.condition(node.cond, scope):
                return None
            node = node.item
        value = self.eval(node, scope, hint=hint)
        if isinstance(value, Template) and not self.satisfied(value):
            cursor = scope.cursor
            if cursor is None:
                raise self.error("E0310", "this layer has no input", node.span,
                                 "declare inputs first, or write `x -> layer`")
            return self.apply(value, [self.tensor(cursor, node.span)], scope, hint)
        return self.force(value, scope, hint)

    # ---- expressions -----------------------------------------------------------------------
    def eval(self, node: S.Node, scope: Scope, hint: str | None = None):
        method = getattr(self, "eval_" + type(node).__name__)
        return method(node, scope, hint)

    def eval_Literal(self, node: S.Literal, scope, hint):
        return node.value

    def eval_ListExpr(self, node: S.ListExpr, scope, hint):
        items, nodes = [], []
        for sub in node.items:
            if isinstance(sub, S.When):
                if not self.condition(sub.cond, scope):
                    continue  # the item is absent: later items are numbered as if it never was
                sub = sub.item
            item = self.eval(sub, scope)
            if isinstance(item, RepeatT):  # `[a, b * 3]` is [a, b, b, b]
                items += [item.item] * item.count
                nodes += [sub] * item.count
            else:
                items.append(item)
                nodes.append(sub)
        node = S.ListExpr(node.span, tuple(nodes))
        if items and all(isinstance(i, Template) for i in items):
            for item, sub in zip(items, node.items):
                if isinstance(item, NamedT):
                    raise self.error("E0311", "layers in a list are numbered, not named",
                                     sub.span, f"drop `{item.name}:`; they become .0, .1, ...")
            return SeqT(node.span, items=items)
        if any(isinstance(i, (Template, Value, tuple)) and not _is_plain(i) for i in items):
            layers = any(isinstance(i, Template) for i in items)  # then the odd one is a non-layer
            bad = next(s for i, s in zip(items, node.items)
                       if (not isinstance(i, Template) if layers else
                           isinstance(i, (Template, Value)) or not _is_plain(i)))
            raise self.error("E0312", "a list holds either layers or plain values", bad.span,
                             "a list of layers applies them in turn; numbers go in a layer's "
                             "arguments" if layers else None)
        return tuple(items)

    def eval_Name(self, node: S.Name, scope: Scope, hint):
        name = node.id
        if name in scope.locals:
            v = scope.locals[name]
            if v is POISON:
                raise _Abort()
            if isinstance(v, Value):
                scope.read.add(id(v))
            elif isinstance(v, tuple):
                scope.read.update(id(x) for x in v)
            return v
        if name in scope.layers:
            child = scope.layers[name]
            return ModRef(node.span, path=[name], child=child, scope=scope)
        if name in scope.params:
            return scope.params[name]
        if name in self.program.consts:
            return self.global_const(name, node.span)
        if name in self.program.definitions:
            return BlockT(node.span, defn=self.program.definitions[name])
        if name in REGISTRY:
            return KindT(node.span, cls=REGISTRY[name])
        if name in BUILTINS:
            return Builtin(name)
        if name in DTYPES:
            raise self.error("E0306", f"`{name}` is a tensor type, not a value", node.span)
        known = (list(scope.locals) + list(scope.layers) + list(scope.params)
                 + list(self.program.consts) + list(self.program.definitions) + list(REGISTRY))
        hint = did_you_mean(name, known)
        if hint is None or hint == did_you_mean(name, REGISTRY):  # it reads as a layer kind
            hint = REGISTRY.unknown_kind_help(hint)
        raise self.error("E0201", f"unknown name `{name}`", node.span, hint)

    def global_const(self, name: str, span: Span):
        if name in self.const_values:
            return self.const_values[name]
        if name in self.const_busy:
            raise self.error("E0208", f"constant `{name}` is defined in terms of itself", span,
                             f"give `{name}` a value that does not depend on it",
                             [(f"`{name}` is defined here", self.program.consts[name].span)]
                             if not _within(span, self.program.consts[name].span) else [])
        self.const_busy.add(name)
        try:
            node = self.program.consts[name]
            scope = Scope(ModuleDef("", "", node.span), {})
            value = self.value(self.eval(node.value, scope), node.value.span)
        finally:
            self.const_busy.discard(name)
        self.const_values[name] = value
        return value

    def eval_Attr(self, node: S.Attr, scope: Scope, hint):
        target = self.eval(node.target, scope)
        if isinstance(target, ModRef) and isinstance(target.child, ModuleDef):
            for name, child in target.child.children:
                if name == node.name:
                    return ModRef(node.span, path=target.path + [name], child=child, scope=scope)
            names = [n for n, _ in target.child.children if n]
            raise self.error("E0202", f"`{'.'.join(target.path)}` has no layer `{node.name}`",
                             node.span, did_you_mean(node.name, names))
        raise self.error("E0202", f"{_describe(target)} has no attribute `{node.name}`", node.span)

    def eval_Index(self, node: S.Index, scope: Scope, hint):
        target = self.eval(node.target, scope)
        if isinstance(target, tuple) and len(node.items) == 1:
            i = self.value(self.eval(node.items[0], scope), node.items[0].span)
            if not isinstance(i, int) or isinstance(i, bool) or not -len(target) <= i < len(target):
                raise self.error("E0313", f"index {_show(i)} out of range for {len(target)} values",
                                 node.items[0].span)
            return target[i]
        if isinstance(node.target, S.Name) and node.target.id in DTYPES:
            raise self.error("E0306", "a tensor type is only allowed in an `input` declaration",
                             node.span)
        raise self.error("E0313", f"cannot index {_describe(target)}", node.span,
                         "use select(...) or narrow(...) to take part of a tensor")

    def eval_Unary(self, node: S.Unary, scope: Scope, hint):
        v = self.eval(node.operand, scope)
        if node.op == "not":
            return not self.truth(v, node.operand.span)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
        if isinstance(v, (Value, Template)):
            x = self.force(v, scope)
            return self.apply_kind("mul", [self.tensor(x, node.span)], {"other": (-1.0, node.span)},
                                   scope, node.span, hint)
        raise self.error("E0314", f"cannot negate {_describe(v)}", node.span)

    def eval_BinOp(self, node: S.BinOp, scope: Scope, hint):
        op = node.op
        if op in ("and", "or"):
            left = self.truth(self.eval(node.left, scope), node.left.span)
            if (op == "and") != left:
                return left
            return self.truth(self.eval(node.right, scope), node.right.span)
        left = self.eval(node.left, scope)
        right = self.eval(node.right, scope)
        if op in "+*" and isinstance(left, Template) and not self.satisfied(left):
            listed = self.expand_alias(left)
            if isinstance(listed, SeqT) and not listed.bound and not listed.bound_kw:
                return self.list_op(op, listed, right, node)  # list arithmetic, as in Python
            if op == "*":
                return self.repeat(left, right, node)
        left = self.force(left, scope)
        right = self.force(right, scope)
        if isinstance(left, Value) or isinstance(right, Value):
            return self.tensor_binop(op, left, right, node, scope, hint)
        return self.scalar_binop(op, left, right, node)

    def list_op(self, op: str, left: "SeqT", right, node: S.BinOp) -> "SeqT":
        """`[a, b] + [c]` concatenates, `[a, b] * 2` repeats: one flat list either way."""
        if op == "*":
            count = self.repeat(left, right, node).count
            if len(left.items) * count > MAX_REPEAT:  # refused before it is built, not after
                raise self.error("E0315", f"the repeated list would hold {len(left.items) * count} "
                                 f"layers; at most {MAX_REPEAT}", node.span)
            return SeqT(node.span, items=left.items * count)
        other = self.expand_alias(right) if isinstance(right, Template) else right
        if not isinstance(other, SeqT) or other.bound or other.bound_kw:
            raise self.error("E0314", f"a list of layers can only be joined to another list, not "
                             f"{_describe(right)}", node.right.span,
                             "wrap a single layer in brackets: [layer]")
        return SeqT(node.span, items=left.items + other.items)

    def repeat(self, item: Template, count, node: S.BinOp) -> RepeatT:
        if not isinstance(count, int) or isinstance(count, bool):
            raise self.error("E0315", f"a layer repeats an integer number of times, got "
                             f"{_describe(count)}", node.right.span)
        if not 1 <= count <= MAX_REPEAT:
            raise self.error("E0315", f"repeat count must be between 1 and {MAX_REPEAT}, got {count}",
                             node.right.span, "to leave the layer out, write `layer when COND`"
                             if count < 1 else None)
        if count * _size(item) > MAX_OPS:  # nested repeats multiply: refuse before unrolling
            raise self.error("E0501", f"this repeat unrolls to {count * _size(item)} layers, more "
                             f"than the limit of {MAX_OPS}", node.span)
        if isinstance(item, NamedT):
            raise self.error("E0311", "name the repeat, not the repeated layer", item.name_span,
                             f"write `{item.name}: layer * {count}`")
        return RepeatT(node.span, item=item, count=count)

    def tensor_binop(self, op, left, right, node: S.BinOp, scope: Scope, hint):
        kinds = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}
        if op not in kinds:
            raise self.error("E0314", f"`{op}` is not defined on tensors", node.span,
                             "tensors support + - * / and @")
        for side, sspan in ((left, node.left.span), (right, node.right.span)):
            if not isinstance(side, (Value, int, float)) or isinstance(side, bool):
                raise self.error("E0314", f"cannot combine a tensor with {_describe(side)} by `{op}`",
                                 sspan)
        if isinstance(left, Value) and isinstance(right, Value):
            return self.apply_kind(kinds[op], [left, right], {}, scope, node.span, hint)
        if op == "@":
            raise self.error("E0314", "`@` needs two tensors", node.span)
        tensor, number = (left, right) if isinstance(left, Value) else (right, left)
        if op in "-/" and tensor is right:
            raise self.error("E0314", f"`number {op} tensor` is not supported", node.span,
                             "write it with the tensor on the left")
        return self.apply_kind(kinds[op], [tensor], {"other": (float(number), node.span)},
                               scope, node.span, hint)

    def scalar_binop(self, op, a, b, node: S.BinOp):
        if op in ("==", "!="):
            return (a == b) == (op == "==")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if not numbers:
            if op == "+" and isinstance(a, str) and isinstance(b, str):
                return a + b
            raise self.error("E0314", f"cannot apply `{op}` to {_describe(a)} and {_describe(b)}",
                             node.span)
        try:
            if op in ("<", "<=", ">", ">="):
                return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
            if op in ("/", "//", "%") and b == 0:
                raise self.error("E0316", "division by zero", node.right.span)
            result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                      "/": lambda: a / b, "//": lambda: a // b, "%": lambda: a % b}.get(op)
            if result is None:
                raise self.error("E0314", f"`{op}` is not defined on numbers", node.span)
            value = result()
        except OverflowError:
            raise self.error("E0317", "number out of range", node.span) from None
        if abs(value) > MAX_INT:
            raise self.error("E0317", "number out of range", node.span,
                             f"values are limited to magnitude {MAX_INT}")
        return value

    def eval_Pipe(self, node: S.Pipe, scope: Scope, hint):
        left = self.force(self.eval(node.left, scope, hint), scope, hint)
        if left is POISON:
            raise _Abort()
        ins = list(left) if isinstance(left, tuple) else [left]
        for i, v in enumerate(ins):
            if isinstance(v, Template):
                raise self.error("E0330", f"a flow starts from a tensor, not {_describe(v)}",
                                 node.left.span, "start it from a tensor, as in `h = x -> ...`; a "
                                 "statement that is only layers, one per line, applies to the "
                                 "current tensor")
            self.tensor(v, node.left.span)
        stage = node.stage
        if isinstance(stage, S.When):
            if not self.condition(stage.cond, scope):
                return left
            stage = stage.item
        tmpl = self.eval(stage, scope)
        if not isinstance(tmpl, Template):
            raise self.error("E0318", f"{_describe(tmpl)} is not a layer", stage.span,
                             "the right of `->` is a layer such as relu or conv2d(64, 3)")
        return self.apply(tmpl, ins, scope, hint)

    def eval_When(self, node: S.When, scope: Scope, hint):
        raise self.error("E0319", "`when` goes on a stage or a statement", node.span,
                         "write `x -> layer when cond` or `name: layer when cond`")

    def eval_Named(self, node: S.Named, scope: Scope, hint):
        if keyword.iskeyword(node.name) or node.name in ("forward", "training"):
            raise self.error("E0209", f"`{node.name}` cannot name a layer", node.name_span,
                             f"it is reserved in the generated Python; call it e.g. `{node.name}_`")
        value = self.eval(node.value, scope, hint)
        if not isinstance(value, Template):
            raise self.error("E0318", f"only layers can be named; this is {_describe(value)}",
                             node.value.span)
        if isinstance(value, ModRef):
            raise self.error("E0205", f"`{'.'.join(value.path)}` is already a layer; reusing it "
                             f"shares its weights, so it keeps its name", node.name_span,
                             f"write just `{'.'.join(value.path)}`")
        named = NamedT(node.span, bound=value.bound, bound_kw=value.bound_kw, name=node.name,
                       name_span=node.name_span, item=value)
        return named

    def eval_Call(self, node: S.Call, scope: Scope, hint):
        func = self.eval(node.func, scope)
        if isinstance(func, Builtin):
            return self.builtin(func.name, node, scope)
        if isinstance(func, (KindT, BlockT)) and not (func.pos or func.kw):
            return self.call_template(func, node, scope)
        if isinstance(func, ModRef):
            tensors, rest = self.split_args(node, scope)
            if rest:
                raise self.error("E0302", f"`{'.'.join(func.path)}` is an existing layer; it takes "
                                 "only tensors", rest[0][2])
            func = ModRef(node.span, path=func.path, child=func.child, scope=func.scope)
            func.bound = [t for t, _ in tensors if not isinstance(t, str)]
            return func
        raise self.error("E0320", f"{_describe(func)} cannot be called", node.func.span,
                         self.shadow_help(node.func, scope))

    def shadow_help(self, node: S.Node, scope: Scope) -> str | None:
        """When a local name, parameter or constant hides a layer kind or block of that name
        (a model parameter `dropout = 0.5` hides the layer `dropout`), say so."""
        if not isinstance(node, S.Name):
            return None
        name = node.id
        hidden = ("layer kind" if name in REGISTRY else
                  "block" if name in self.program.definitions else None)
        if hidden is None:
            return None
        if name in scope.locals or name in scope.layers:
            by = "a name defined in this block"
        elif name in scope.params:
            by = "a parameter"
        elif name in self.program.consts:
            by = "a constant"
        else:
            return None
        return f"`{name}` here is {by}, which hides the {hidden} `{name}`: rename one of them"

    def split_args(self, node: S.Call, scope: Scope):
        """(tensor args as (value, name|None)), (other args as (name|None, value, span))."""
        tensors, rest = [], []
        for arg in node.args:
            v = self.force(self.eval(arg.value, scope), scope)
            if isinstance(v, Value):
                tensors.append((v, arg.name))
            elif isinstance(v, tuple) and v and all(isinstance(x, Value) for x in v) and arg.name is None:
                tensors.extend((x, None) for x in v)
            else:
                rest.append((arg.name, v, arg.value.span))
        return tensors, rest

    def call_template(self, func, node: S.Call, scope: Scope):
        bound, bound_kw, pos, kw = [], {}, [], {}
        tie = None
        for arg in node.args:
            v = self.force(self.eval(arg.value, scope), scope)
            if isinstance(v, Value):
                if arg.name is None:
                    if pos:
                        raise self.error("E0321", "tensor arguments come before other arguments",
                                         arg.span)
                    bound.append(v)
                else:
                    bound_kw[arg.name] = v
                continue
            if arg.name is None:
                if kw:
                    raise self.error("E0321", "positional argument after a named one", arg.span,
                                     "move it before the named arguments, or name it too")
                pos.append((v, arg.value.span))
            elif arg.name in kw:
                raise self.error("E0303", f"argument `{arg.name}` given twice", arg.span,
                                 "remove one of them")
            elif arg.name == "tie" and isinstance(func, KindT):
                if not isinstance(v, ModRef):
                    raise self.error("E0322", "`tie` names another layer, e.g. tie=wte",
                                     arg.value.span)
                tie = (v, arg.span)
            else:
                kw[arg.name] = (v, arg.span)
        if isinstance(func, KindT):
            return KindT(node.span, bound=bound, bound_kw=bound_kw, cls=func.cls, pos=pos, kw=kw,
                         tie=tie)
        return BlockT(node.span, bound=bound, bound_kw=bound_kw, defn=func.defn, pos=pos, kw=kw)

    def builtin(self, name: str, node: S.Call, scope: Scope):
        args = [self.force(self.eval(a.value, scope), scope) for a in node.args]
        if any(a.name for a in node.args):
            raise self.error("E0302", f"`{name}` takes no named arguments", node.span)
        if name in ("channels", "ndim", "size"):
            need = 2 if name == "size" else 1
            if len(args) != need or not isinstance(args[0], Value):
                raise self.error("E0302", f"`{name}` takes {'a tensor and a dim' if need == 2 else 'a tensor'}",
                                 node.span)
            shape = args[0].type.shape
            if name == "ndim":
                return len(shape) + 1
            if name == "channels":
                if not shape:
                    raise self.error("E0402", "a tensor with only a batch dim has no channels",
                                     node.span)
                return shape[0]
            dim = args[1]
            if not isinstance(dim, int) or isinstance(dim, bool):
                raise self.error("E0302", "`size` takes an integer dim", node.args[1].span)
            try:
                from nnspec.layers.base import norm_dim
                return shape[norm_dim(dim, len(shape), "size")]
            except ShapeError as err:
                raise self.error("E0402", err.message, node.args[1].span, err.help) from None
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(numbers) != len(args) or not args or (name in ("int", "float") and len(args) != 1):
            raise self.error("E0302", f"`{name}` takes numbers", node.span)
        if name == "int":
            if abs(args[0]) > MAX_INT:
                raise self.error("E0317", "number out of range", node.span,
                                 f"values are limited to magnitude {MAX_INT}")
            return int(args[0])
        if name == "float":
            return float(args[0])
        return min(args) if name == "min" else max(args)

    # ---- application -----------------------------------------------------------------------
    def force(self, v, scope: Scope, hint: str | None = None):
        """A template called with all the tensors it needs is applied now; anything else is
        returned as is (a template still waiting for its first input stays a template)."""
        if isinstance(v, Template) and (v.bound or v.bound_kw) and self.satisfied(v):
            return self.apply(v, [], scope, hint)
        return v

    def satisfied(self, t: Template) -> bool:
        """Whether a template's bound tensors cover every input it requires."""
        return len(t.bound) >= _required_inputs(t) if (t.bound or t.bound_kw) else False

    def apply(self, tmpl: Template, ins: list[Value], scope: Scope, hint: str | None):
        """Apply a template to `ins` (prepended to its bound tensors) inside `scope`."""
        name = None
        if isinstance(tmpl, NamedT):
            name, name_span, tmpl = tmpl.name, tmpl.name_span, tmpl.item
            if name in scope.layers or (name in scope.locals and not isinstance(scope.locals[name], Value)):
                first = scope.layers.get(name)
                raise self.error("E0205", f"`{name}` is already defined in this block", name_span,
                                 "give each layer its own name; to reuse a layer's weights, "
                                 f"write just `{name}`",
                                 [(f"`{name}` is first defined here", first.span)]
                                 if isinstance(first, (Leaf, Seq)) else [])
        tmpl = self.expand_alias(tmpl)
        ins = ins + list(tmpl.bound)
        kw = dict(tmpl.bound_kw)
        if isinstance(tmpl, ModRef):
            return self.reuse(tmpl, ins, kw, scope, hint)
        if isinstance(tmpl, KindT) and getattr(tmpl.cls, "functional_only", False):
            layer = self.make_layer(tmpl)
            if tmpl.tie:
                raise self.error("E0322", f"{layer.kind} has no weight to tie", tmpl.tie[1])
            return self.emit(None, layer, ins, kw, scope, tmpl.span, hint or name)
        if name is None and isinstance(tmpl, (SeqT, RepeatT)):
            items = tmpl.items if isinstance(tmpl, SeqT) else [tmpl.item] * tmpl.count
            out: Any = None
            for i, item in enumerate(items):
                out = self.apply(item, ins if i == 0 else [self.tensor(out, tmpl.span)], scope, hint)
            return out
        child, _ = self.instantiate(tmpl, [v.type for v in ins], kw, scope, name)
        if name is None and isinstance(child, Leaf) and not child.layer.params(child.ins) \
                and not child.layer.buffers(child.ins) and not kw \
                and child.layer.functional_source(["x"] * len(ins), child.ins) is not None:
            return self.emit(None, child.layer, ins, kw, scope, tmpl.span, hint)
        scope.module.children.append((name, child))
        if name is not None:
            scope.layers[name] = child
        if isinstance(child, Leaf) and isinstance(tmpl, KindT) and tmpl.tie:
            self.tie(child, tmpl.tie, scope)
        return self.emit(child, child.layer if isinstance(child, Leaf) else None, ins, kw, scope,
                         tmpl.span, hint or name)

    def emit(self, target, layer, ins, kw, scope: Scope, span: Span, hint: str | None,
             reuse: bool = False):
        outs = self.infer(target, layer, ins, kw, span)
        if kw and layer is not None:
            self.check_keywords(layer, target is None, [v.type for v in ins],
                                {k: v.type for k, v in kw.items()}, span)
        self.ops += 1
        if self.ops > MAX_OPS:
            raise self.error("E0501", f"the model has more than {MAX_OPS} operations", span)
        hint = hint or (layer.kind if layer is not None else "x")
        values = [Value(t, hint) for t in outs]
        scope.module.ops.append(Op(target, layer, list(ins), dict(kw), values, span, reuse))
        return values[0] if len(values) == 1 else tuple(values)

    def check_keywords(self, layer: Layer, functional: bool, ins: list[T], kw: dict[str, T],
                       span: Span) -> None:
        """Keyword tensors bind by name in the generated call (infer bound them by type): make
        sure that binding works."""
        args = [f"a{i}" for i in range(len(ins))] + [f"{k}=k{i}" for i, k in enumerate(kw)]
        types = list(ins) + list(kw.values())
        try:
            if functional:
                layer.functional_source(args, types)
            else:
                layer.call_source("m", args, types)
        except ShapeError as err:
            raise self.error("E0401", err.message, span, err.help) from None

    def infer(self, target, layer, ins: list[Value], kw: dict[str, Value], span: Span) -> list[T]:
        if target is None or isinstance(target, Leaf):
            types = self.layer_inputs(layer, ins, kw, span)
            try:
                outs = layer.infer(types)
            except ShapeError as err:
                raise self.error("E0401", err.message, span, err.help) from None
            except MemoryError:  # e.g. a split into more pieces than memory holds
                raise self.error("E0501", f"{layer.kind} on {types[0]} gives a result too large "
                                 "to check", span) from None
            return list(outs) if isinstance(outs, tuple) else [outs]
        if kw:
            raise self.error("E0323", f"unexpected keyword tensor `{next(iter(kw))}`", span)
        if isinstance(target, Seq):
            return [target.out]
        return [v.type for v in target.outputs]

    def layer_inputs(self, layer: Layer, ins: list[Value], kw: dict[str, Value], span: Span):
        spec = type(layer).inputs
        required, optional, variadic = _input_spec(type(layer))
        n_pos = len(required) + len(optional)
        if variadic:
            if len(ins) < 1:
                raise self.error("E0323", f"{layer.kind} needs at least one input tensor", span)
        elif len(ins) < len(required) or len(ins) > n_pos:
            want = (f"{len(required)}" if not optional else f"{len(required)} to {n_pos}")
            raise self.error("E0323", f"{layer.kind} takes {want} input tensor"
                             f"{'s' if n_pos != 1 else ''} ({', '.join(n.rstrip('?') for n in spec)}), "
                             f"got {len(ins)}", span)
        for name in kw:
            if name not in optional or len(ins) > required.__len__() + optional.index(name):
                raise self.error("E0323", f"{layer.kind} has no tensor input `{name}`", span,
                                 did_you_mean(name, optional))
        types = [v.type for v in ins] + [v.type for v in kw.values()]
        if types and types[0].dtype not in type(layer).input_dtypes:
            raise self.error("E0403", f"{layer.kind} expects a {' or '.join(type(layer).input_dtypes)} "
                             f"tensor, got {types[0].dtype} {fmt_shape(types[0].shape)}", span,
                             f"declare the input as {type(layer).input_dtypes[0]}[...] if it holds "
                             f"{type(layer).input_dtypes[0]} values")
        return types

    # instantiate: build a child module for a template and input types (nothing is emitted)
    def instantiate(self, tmpl: Template, ins: list[T], kw: dict[str, Value], scope: Scope,
                    name: str | None, in_list: bool = False):
        if isinstance(tmpl, NamedT):
            raise self.error("E0311", "layers in a list are numbered, not named", tmpl.name_span)
        tmpl = self.expand_alias(tmpl)
        if isinstance(tmpl, KindT):
            layer = self.make_layer(tmpl)
            if in_list and getattr(type(layer), "functional_only", False):
                raise self.error("E0324", f"{layer.kind} cannot stand in a list or repeat",
                                 tmpl.span, "it is a function, not a module: apply it in the flow "
                                 f"before or after the list, e.g. `x -> [...] -> {layer.kind}`")
            if in_list and getattr(type(layer), "bare_parameter", False):
                # nn.Sequential holds modules, and a parameter is a bare tensor; as a list item
                # it would also throw away everything before it (it keeps only the batch size)
                raise self.error("E0324", f"{layer.kind} cannot stand in a list or repeat",
                                 tmpl.span, "name it in a flow, `t = x -> cls: parameter([1, 8])`, "
                                 "or put it in a block: a list or repeat of blocks gives each "
                                 "block its own parameter")
            leaf = Leaf(layer, list(ins), tmpl.span)
            outs = self.infer(leaf, layer, [Value(t, "x") for t in ins],
                              {k: v for k, v in kw.items()}, tmpl.span)
            if kw:  # as `emit` checks a layer applied in the flow: a list item binds the same way
                self.check_keywords(layer, False, list(ins), {k: v.type for k, v in kw.items()},
                                    tmpl.span)
            leaf.ins = list(ins) + [v.type for v in kw.values()]
            self.count(leaf, tmpl.span)
            return leaf, outs
        if isinstance(tmpl, BlockT):
            module = self.instantiate_block(tmpl, ins, kw, scope)
            return module, [v.type for v in module.outputs]
        if isinstance(tmpl, (SeqT, RepeatT)):
            items = tmpl.items if isinstance(tmpl, SeqT) else [tmpl.item] * tmpl.count
            children, extras, keywords, cur = [], [], [], list(ins)
            for item in items:
                extra = list(item.bound)
                child, outs = self.instantiate(item, cur + [v.type for v in extra],
                                               dict(item.bound_kw), scope, None, in_list=True)
                if len(outs) != 1:
                    raise self.error("E0325", "layers in a sequence must each give one tensor",
                                     item.span)
                children.append(child)
                extras.append(extra + list(item.bound_kw.values()))
                keywords.append(tuple(item.bound_kw))
                cur = outs
            seq = Seq(children, extras, list(ins), tmpl.span, cur[0], keywords)
            return seq, cur
        if isinstance(tmpl, ModRef):
            raise self.error("E0326", f"`{'.'.join(tmpl.path)}` is an existing layer and cannot be "
                             "placed in a list or repeat", tmpl.span)
        raise self.error("E0318", "not a layer", tmpl.span)

    def expand_alias(self, tmpl: Template) -> Template:
        """`block Name(p) = expr`: the template `expr` with the call's parameters bound."""
        while isinstance(tmpl, BlockT) and tmpl.defn.alias is not None:
            defn = tmpl.defn
            if sum(1 for name, _ in self.stack if name == defn.name) or len(self.stack) >= MAX_DEPTH:
                raise self.error("E0502", f"`{defn.name}` uses itself", tmpl.span)
            self.stack.append((defn.name, tmpl.span))
            try:
                params = self.bind_params(defn, tmpl.pos, tmpl.kw, tmpl.span)
                scope = Scope(ModuleDef(defn.name, "", defn.span), params)
                inner = self.eval(defn.alias, scope)
            finally:
                self.stack.pop()
            if not isinstance(inner, Template) or isinstance(inner, ModRef):
                raise self.error("E0318", f"`{defn.name}` must stand for a layer or a list of layers, "
                                 f"not {_describe(inner)}", defn.alias.span)
            if isinstance(inner, (SeqT, RepeatT)) and tmpl.bound_kw:
                # a list has no named inputs: the tensor would be dropped, silently
                raise self.error("E0323", f"unexpected keyword tensor `{next(iter(tmpl.bound_kw))}`"
                                 f": `{defn.name}` stands for a list, which takes its tensors "
                                 "positionally", tmpl.span,
                                 "give the tensor to the layer in the list that takes it",
                                 [(f"`{defn.name}` is defined here", defn.alias.span)])
            inner = copy.copy(inner)
            inner.bound = list(inner.bound) + list(tmpl.bound)
            inner.bound_kw = {**inner.bound_kw, **tmpl.bound_kw}
            tmpl = inner
        return tmpl

    def make_layer(self, tmpl: KindT) -> Layer:
        cls = tmpl.cls
        fields = [f for f in cls.model_fields]
        if len(tmpl.pos) > len(fields):
            raise self.error("E0302", f"{cls.kind} takes at most {len(fields)} positional argument"
                             f"{'s' if len(fields) != 1 else ''}, got {len(tmpl.pos)}",
                             tmpl.pos[len(fields)][1],
                             f"its arguments are: {', '.join(fields) or '(none)'}")
        data: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        aliases = cls.aliases()
        for (value, span), fname in zip(tmpl.pos, fields):
            data[fname], spans[fname] = value, span
        for key, (value, span) in tmpl.kw.items():
            fname = aliases.get(key, key)
            if fname not in cls.model_fields:
                raise self.error("E0301", f"{cls.kind} has no argument `{key}`", span,
                                 did_you_mean(key, fields + list(aliases)) or
                                 f"its arguments are: {', '.join(fields) or '(none)'}")
            if fname in data:
                raise self.error("E0303", f"argument `{key}` given twice", span,
                                 f"`{fname}` is also argument {fields.index(fname) + 1} by position"
                                 if fname in fields[:len(tmpl.pos)] else "remove one of them")
            data[fname], spans[fname] = value, span
        for key, value in data.items():
            if isinstance(value, (Template, Value, Builtin)):
                raise self.error("E0327", f"argument `{key}` of {cls.kind} must be a value, got "
                                 f"{_describe(value)}", spans[key])
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = None
            for e in err.errors():
                fname = str(e["loc"][0]) if e["loc"] else ""
                span = spans.get(fname, tmpl.span)
                msg = e["msg"][0].lower() + e["msg"][1:]
                if e["type"] == "value_error":  # a validator's own words, without Pydantic's prefix
                    msg = str(e.get("ctx", {}).get("error", msg))
                if e["type"] == "missing":
                    diag = self.error("E0328", f"{cls.kind} needs argument `{fname}`", tmpl.span,
                                      f"e.g. {cls.kind}({', '.join(f for f in fields if cls.model_fields[f].is_required())})")
                else:
                    got = data.get(fname)
                    shown = "" if ", got " in msg else f", got {_show(got)}"
                    diag = self.error("E0329", f"invalid `{fname}` for {cls.kind}: {msg}{shown}",
                                      span, _type_hint(cls, fname))
                first = first or diag
                break  # one error per layer: union members repeat the same complaint
            raise first if first else _Abort() from None

    def instantiate_block(self, tmpl: BlockT, ins: list[T], kw: dict[str, Value], scope: Scope):
        defn = tmpl.defn
        if len(self.stack) >= MAX_DEPTH:
            raise self.error("E0502", f"blocks nest more than {MAX_DEPTH} deep (is `{defn.name}` "
                             "recursive?)", tmpl.span)
        if any(name == defn.name for name, _ in self.stack):
            raise self.error("E0502", f"`{defn.name}` uses itself", tmpl.span,
                             "a block cannot contain itself")
        self.stack.append((defn.name, tmpl.span))
        try:
            params = self.bind_params(defn, tmpl.pos, tmpl.kw, tmpl.span)
            if kw:
                raise self.error("E0323", f"block `{defn.name}` takes its tensors positionally",
                                 tmpl.span)
            key = (defn.name, id(defn), _freeze(params), tuple(ins))
            if key in self.cache:
                cached = self.cache[key]
                params, ops = self.cache_cost[key]  # counted again, without walking the block
                self.params_total += params
                self.check_limit(tmpl.span)
                self.ops += ops
                if self.ops > MAX_OPS:
                    raise self.error("E0501", f"the model has more than {MAX_OPS} operations",
                                     tmpl.span)
                # a copy, not the cached module: each call is its own module with its own
                # weights, and the passes after check tell modules apart by identity
                return clone(cached)
            module = ModuleDef(defn.name, _signature(defn.name, params), defn.span)
            inner = Scope(module, params)
            before = len(self.reporter.diagnostics)
            params_before, ops_before = self.params_total, self.ops
            self.run_body(defn, inner, [Value(t, "x") for t in ins])
            if len(self.reporter.diagnostics) != before:
                raise _Abort()
            self.cache[key] = module
            self.cache_cost[key] = (self.params_total - params_before, self.ops - ops_before)
            return module
        finally:
            self.stack.pop()

    def count(self, leaf: Leaf, span: Span) -> None:
        try:
            params = leaf.layer.params(leaf.ins)
        except MemoryError:  # e.g. a recurrent layer asked for 10**17 stacked layers
            raise self.error("E0501", f"{leaf.layer.kind} has too many parameters to check",
                             span) from None
        self.params_total += sum(numel(s) for s in params.values())
        self.check_limit(span)
        self.ops += 1  # layers count too: nested repeats multiply them without any operation
        if self.ops > MAX_OPS:
            raise self.error("E0501", f"the model has more than {MAX_OPS} layers and operations",
                             span)

    def check_limit(self, span: Span) -> None:
        if self.params_total > self.max_params:
            self.reporter.error("E0501", f"the model exceeds the parameter limit of "
                                f"{self.max_params:,} (at least {self.params_total:,} so far)",
                                span, "raise it with --max-params N if this is intended")
            raise SpecError(self.reporter.diagnostics, self.reporter.dropped)

    def reuse(self, ref: ModRef, ins: list[Value], kw, scope: Scope, hint):
        child = ref.child
        if ref.scope is not scope:
            raise self.error("E0326", "only layers of this block can be reused", ref.span)
        if isinstance(child, Leaf):
            types = self.layer_inputs(child.layer, ins, kw, ref.span)
            try:
                new = child.layer.params(types)
            except ShapeError as err:
                raise self.error("E0401", err.message, ref.span, err.help) from None
            old = child.layer.params(child.ins)
            if new != old:
                raise self.error("E0404", f"`{'.'.join(ref.path)}` is shared, but its weights "
                                 f"would need other shapes for input {types[0]} "
                                 f"(it was built for {child.ins[0]})", ref.span,
                                 f"for a new layer with its own weights, give it a new name, e.g. "
                                 f"`{ref.path[-1]}2: ...`")
            if child.layer.init_source(types) != child.layer.init_source(child.ins):
                # no weights differ, but the module is constructed for its first input's shape
                # (a layernorm without affine): the built model would refuse the new one
                raise self.error("E0404", f"`{'.'.join(ref.path)}` is shared, but it was built "
                                 f"for input {child.ins[0]} and cannot take {types[0]}", ref.span,
                                 f"for a layer of its own, give it a new name, e.g. "
                                 f"`{ref.path[-1]}2: ...`")
            return self.emit(child, child.layer, ins, kw, scope, ref.span, hint, reuse=True)
        want = child_ins(child)
        got = [v.type for v in ins]
        if want != got:
            raise self.error("E0404", f"`{'.'.join(ref.path)}` was built for "
                             f"{', '.join(map(str, want))}, not {', '.join(map(str, got))}", ref.span,
                             f"for a new layer with its own weights, give it a new name, e.g. "
                             f"`{ref.path[-1]}2: ...`")
        return self.emit(child, None, ins, kw, scope, ref.span, hint, reuse=True)

    def tie(self, leaf: Leaf, tie: tuple[ModRef, Span], scope: Scope) -> None:
        ref, span = tie
        target = ref.child
        mine = leaf.layer.params(leaf.ins).get("weight")
        if not isinstance(target, Leaf):
            raise self.error("E0322", f"`{'.'.join(ref.path)}` is not a single layer", span)
        theirs = target.layer.params(target.ins).get("weight")
        if mine is None or theirs is None:
            raise self.error("E0322", f"tie needs a `weight` on both layers", span)
        if mine != theirs:
            raise self.error("E0405", f"cannot tie weights of shape {list(mine)} to "
                             f"`{'.'.join(ref.path)}.weight` of shape {list(theirs)}", span,
                             "tied weights must have the same shape")
        scope.module.ties.append((leaf, "weight", ref.path + ["weight"], span))

    # ---- small helpers ---------------------------------------------------------------------
    def tensor(self, v, span: Span) -> Value:
        if v is POISON:
            raise _Abort()
        if not isinstance(v, Value):
            raise self.error("E0330", f"expected a tensor, got {_describe(v)}", span)
        return v

    def value(self, v, span: Span):
        if v is POISON:
            raise _Abort()
        if isinstance(v, (Value, Template, Builtin)):
            raise self.error("E0331", f"expected a plain value, got {_describe(v)}", span)
        return v

    def truth(self, v, span: Span) -> bool:
        if not isinstance(v, bool):
            raise self.error("E0332", f"a condition must be true or false, got {_describe(v)}", span,
                             "use true or false, or a comparison such as `depth > 1`")
        return v

    def condition(self, node: S.Node, scope: Scope) -> bool:
        return self.truth(self.value(self.eval(node, scope), node.span), node.span)

    def apply_kind(self, kind: str, ins, kw_args: dict, scope: Scope, span: Span, hint):
        tmpl = KindT(span, cls=REGISTRY[kind], kw=kw_args)
        return self.apply(tmpl, ins, scope, hint)


@functools.lru_cache(maxsize=None)
def _input_spec(cls: type[Layer]) -> tuple[list[str], list[str], bool]:
    """(required, optional, variadic) from a kind's `inputs` declaration."""
    spec = cls.inputs
    required = [n for n in spec if not n.endswith("?") and not n.startswith("*")]
    optional = [n[:-1] for n in spec if n.endswith("?")]
    return required, optional, any(n.startswith("*") for n in spec)


def _required_inputs(t: Template) -> int:
    if isinstance(t, NamedT):
        return _required_inputs(t.item)
    if isinstance(t, KindT):
        return sum(1 for n in t.cls.inputs if not n.endswith("?"))
    if isinstance(t, BlockT):
        if t.defn.alias is not None:
            return 1
        return sum(len(st.decls) for st in t.defn.body if isinstance(st, S.Inputs))
    if isinstance(t, ModRef):
        child = t.child
        if isinstance(child, Leaf):
            return sum(1 for n in type(child.layer).inputs if not n.endswith("?"))
        return len(child.inputs) if isinstance(child, ModuleDef) else 1
    return 1


def _names_defined(stmt: S.Node) -> list[str]:
    """Names a failed statement would have defined, so later uses stay quiet."""
    if isinstance(stmt, S.Assign):
        return list(stmt.names)
    node = stmt.value if isinstance(stmt, S.ExprStmt) else None
    while isinstance(node, (S.When, S.Pipe)):
        node = node.item if isinstance(node, S.When) else node.stage
    return [node.name] if isinstance(node, S.Named) else []


def _size(tmpl) -> int:
    """How many layers a template unrolls to (a block counts as one)."""
    if isinstance(tmpl, RepeatT):
        return tmpl.count * _size(tmpl.item)
    if isinstance(tmpl, SeqT):
        return sum(_size(i) for i in tmpl.items)
    if isinstance(tmpl, NamedT):
        return _size(tmpl.item)
    return 1


def _within(inner: Span | None, outer: Span) -> bool:
    """Whether `inner` lies inside `outer` (same file)."""
    return (inner is not None and inner.source is outer.source
            and (outer.line, outer.col) <= (inner.line, inner.col)
            and (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col))


def _is_plain(v) -> bool:
    if isinstance(v, tuple):
        return all(_is_plain(x) for x in v)
    return isinstance(v, (int, float, str, bool))


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, (type(v).__name__, v)) for k, v in params.items()))


def _signature(name: str, params: dict) -> str:
    return f"{name}({', '.join(f'{k}={_show(v)}' for k, v in params.items())})"


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, (int, float)):
        return repr(v)
    return _describe(v)


def _describe(v) -> str:
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, ModRef):
        return f"the layer `{'.'.join(v.path)}`"
    if isinstance(v, KindT):
        return f"the layer kind `{v.cls.kind}`"
    if isinstance(v, BlockT):
        return f"the block `{v.defn.name}`"
    if isinstance(v, Template):
        return "a layer"
    if isinstance(v, Builtin):
        return f"the function `{v.name}`"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, tuple):
        return f"a list of {len(v)}"
    return "a value"


def _type_hint(cls: type[Layer], fname: str) -> str | None:
    f = cls.model_fields.get(fname)
    if f is None:
        return None
    ann = _type_words(f.annotation, f.metadata)
    desc = f": {f.description}" if f.description else ""
    return f"`{fname}` is {ann}{desc}"


def _type_words(ann, metadata=()) -> str:
    """A field's type in a user's words: `a positive integer or a list of positive integers`."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_words(args[0], list(metadata) + list(ann.__metadata__))
    if origin in (typing.Union, types.UnionType):
        words = [_type_words(a, metadata) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(words))
    if origin is typing.Literal:
        return ("one of " if len(args) > 1 else "") + ", ".join(_show(a) for a in args)
    if origin is tuple:
        item = _type_words(args[0]) if args else "a value"
        for old, new in (("a ", ""), ("an ", ""), ("integer", "integers"), ("number", "numbers")):
            item = item.replace(old, new)
        return "a list of " + item
    if ann is bool:
        return "true or false"
    if ann not in (int, float):
        return getattr(ann, "__name__", str(ann))
    noun = "integer" if ann is int else "number"
    low = {type(m).__name__: m for m in metadata}
    if "Ge" in low and "Le" in low:
        return f"a number from {low['Ge'].ge} to {low['Le'].le}"
    if "Gt" in low and low["Gt"].gt == 0:
        return f"a positive {noun}"
    if "Ge" in low and low["Ge"].ge == 0:
        return f"a non-negative {noun}"
    return f"an {noun}" if noun == "integer" else f"a {noun}"


def check(program: Program, model: str | None = None, overrides: dict[str, Any] | None = None,
          max_params: int = DEFAULT_MAX_PARAMS) -> ModuleDef:
    """Elaborate the root model of `program` into the IR; raises SpecError with every error."""
    checker = Checker(program, max_params)
    defn = _pick_model(program, model, checker.reporter)
    try:
        root = checker.check_model(defn, dict(overrides or {}))
    except _Abort:
        root = None
    except RecursionError:  # a last resort: parsing bounds nesting, but nested blocks multiply it
        checker.reporter.error("E0502", f"`{defn.name}` nests too deeply to check", defn.span,
                               "use fewer levels of blocks, or split long expressions")
        root = None
    checker.reporter.check()
    assert root is not None
    verify_identities(root)
    name_children(root)
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
    checker = Checker(program, DEFAULT_MAX_PARAMS)
    values = {}
    for name, node in program.consts.items():
        try:
            values[name] = checker.global_const(name, node.span)
        except _Abort:
            pass
    checker.reporter.check()
    return values
