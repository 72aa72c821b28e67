"""Expressions: evaluating a spec's expressions to values, tensors and templates.

Arithmetic on numbers is exact and bounded; `x -> layer`, `-x`, `a + b` on tensors become
operations in the module being built; a layer kind or block named or called becomes a template
(see templates.py) that the elaborator applies. Names resolve, innermost first, to a local
(a tensor or constant), a named child layer, a parameter, a top-level constant, a block, a
layer kind, or a builtin function.
"""
from __future__ import annotations

from typing import Any

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Span, did_you_mean
from nnspec.ir import ModuleDef, Value
from nnspec.layers import REGISTRY
from nnspec.lang.check.context import Context, within
from nnspec.lang.check.arithmetic import ARITY, scalar_binop
from nnspec.lang.check.functions import call_builtin
from nnspec.lang.check.lists import ListEvaluator
from nnspec.lang.check.scoping import TIE_SCOPE, defined_later
from nnspec.lang.check.templates import (
    BlockT, KindT, ModRef, NamedT, RepeatT, SeqT, Template, satisfied, unrolled_size
)
from nnspec.lang.check.values import (
    BUILTINS, DTYPES, MAX_OPS, MAX_REPEAT, NUMERIC_BUILTINS, POISON, Abort, Builtin,
    Scope, describe, is_plain, show,
)


class Evaluator(ListEvaluator):
    """Evaluates expressions in a scope.

    `flow` is the Elaborator that made this evaluator (elaborate.py, which imports this module,
    so it is not imported here): an expression that applies a layer (`x -> relu`, `-x`) or
    expands a block alias hands the template to it.
    """

    def __init__(self, ctx: Context, flow: Any):
        self.ctx = ctx
        self.error = ctx.error
        self.flow = flow
        self.const_values: dict[str, Any] = {}  # top-level constants evaluated so far
        self.const_busy: set[str] = set()        # constants being evaluated, to catch cycles

    def eval(self, node: S.Node, scope: Scope, hint: str | None = None):
        method = getattr(self, "eval_" + type(node).__name__)
        return method(node, scope, hint)

    def eval_Literal(self, node: S.Literal, scope, hint):
        return node.value

    def eval_TupleExpr(self, node: S.TupleExpr, scope: Scope, hint):
        """`(x, bias)`: tensors that flow on together, as a block with several outputs gives them."""
        values = tuple(self.flow.force(self.eval(sub, scope), scope) for sub in node.items)
        for v, sub in zip(values, node.items):
            if isinstance(v, Template) or v is POISON:
                raise self.error("E0312", f"a tuple holds tensors or plain values, not "
                                 f"{describe(v)}", sub.span,
                                 "a list of layers is written in brackets: [a, b]")
        return values

    def eval_Name(self, node: S.Name, scope: Scope, hint):
        name = node.id
        if name in scope.locals:
            v = scope.locals[name]
            if v is POISON:
                raise Abort()
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
        if name in self.ctx.program.consts:
            return self.global_const(name, node.span)
        if name in self.ctx.program.definitions:
            return BlockT(node.span, defn=self.ctx.program.definitions[name])
        if name in REGISTRY:
            return KindT(node.span, cls=REGISTRY[name])
        if name in BUILTINS:
            return Builtin(name)
        if name in DTYPES:
            raise self.error("E0306", f"`{name}` is a tensor type, not a value", node.span)
        known = (list(scope.locals) + list(scope.layers) + list(scope.params)
                 + list(self.ctx.program.consts) + list(self.ctx.program.definitions)
                 + list(REGISTRY))
        later = defined_later(self.ctx.program.definitions.get(scope.module.name), name, node.span)
        if later is not None:
            raise self.error("E0201", f"`{name}` is used before it is defined", node.span,
                             "statements run in order: move this use below the definition, or "
                             f"define `{name}` first (to pass a layer to a block, or tie to it, "
                             "it must exist already)", [(f"`{name}` is defined here", later)])
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
                             [(f"`{name}` is defined here", self.ctx.program.consts[name].span)]
                             if not within(span, self.ctx.program.consts[name].span) else [])
        self.const_busy.add(name)
        try:
            node = self.ctx.program.consts[name]
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
        raise self.error("E0202", f"{describe(target)} has no attribute `{node.name}`", node.span)

    def eval_Index(self, node: S.Index, scope: Scope, hint):
        target = self.eval(node.target, scope)
        if isinstance(target, tuple) and len(node.items) == 1:
            i = self.value(self.eval(node.items[0], scope), node.items[0].span)
            if not isinstance(i, int) or isinstance(i, bool) or not -len(target) <= i < len(target):
                raise self.error("E0313", f"index {show(i)} out of range for {len(target)} values",
                                 node.items[0].span)
            return target[i]
        if isinstance(node.target, S.Name) and node.target.id in DTYPES:
            raise self.error("E0306", "a tensor type is only allowed in an `input` declaration",
                             node.span)
        raise self.error("E0313", f"cannot index {describe(target)}", node.span,
                         "use select(...) or narrow(...) to take part of a tensor")

    def eval_IfElse(self, node: S.IfElse, scope: Scope, hint):
        """Only the branch the condition picks is evaluated, as in Python: the other may name a
        layer or tensor that this call does not have."""
        picked = node.then if self.condition(node.cond, scope) else node.other
        return self.eval(picked, scope, hint)

    def eval_Unary(self, node: S.Unary, scope: Scope, hint):
        v = self.eval(node.operand, scope)
        if node.op == "not":
            return not self.truth(v, node.operand.span)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
        if isinstance(v, (Value, Template)):
            x = self.flow.force(v, scope)
            return self.flow.apply_kind("mul", [self.tensor(x, node.span)],
                                        {"other": (-1.0, node.span)}, scope, node.span, hint)
        raise self.error("E0314", f"cannot negate {describe(v)}", node.span)

    def eval_BinOp(self, node: S.BinOp, scope: Scope, hint):
        op = node.op
        if op in ("and", "or"):
            left = self.truth(self.eval(node.left, scope), node.left.span)
            if (op == "and") != left:
                return left
            return self.truth(self.eval(node.right, scope), node.right.span)
        left = self.eval(node.left, scope)
        right = self.eval(node.right, scope)
        if op in "+*" and isinstance(left, Template) and not satisfied(left):
            listed = self.flow.expand_alias(left)
            if isinstance(listed, SeqT) and not listed.bound and not listed.bound_kw:
                return self.list_op(op, listed, right, node)  # list arithmetic, as in Python
            if op == "*":
                return self.repeat(left, right, node)
        left = self.flow.force(left, scope)
        right = self.flow.force(right, scope)
        if isinstance(left, Value) or isinstance(right, Value):
            return self.tensor_binop(op, left, right, node, scope, hint)
        return scalar_binop(self.error, op, left, right, node)

    def list_op(self, op: str, left: "SeqT", right, node: S.BinOp) -> "SeqT":
        """`[a, b] + [c]` concatenates, `[a, b] * 2` repeats: one flat list either way."""
        if op == "*":
            count = self.repeat(left, right, node).count
            if len(left.items) * count > MAX_REPEAT:  # refused before it is built, not after
                raise self.error("E0315", f"the repeated list would hold {len(left.items) * count} "
                                 f"layers; at most {MAX_REPEAT}", node.span)
            self.check_item_names(left.items * count)
            return SeqT(node.span, items=left.items * count)
        other = self.flow.expand_alias(right) if isinstance(right, Template) else right
        if not isinstance(other, SeqT) or other.bound or other.bound_kw:
            raise self.error("E0314", f"a list of layers can only be joined to another list, not "
                             f"{describe(right)}", node.right.span,
                             "wrap a single layer in brackets: [layer]")
        self.check_item_names(left.items + other.items)
        return SeqT(node.span, items=left.items + other.items)

    def repeat(self, item: Template, count, node: S.BinOp) -> RepeatT:
        if not isinstance(count, int) or isinstance(count, bool):
            raise self.error("E0315", f"a layer repeats an integer number of times, got "
                             f"{describe(count)}", node.right.span)
        if not 1 <= count <= MAX_REPEAT:
            raise self.error("E0315", f"repeat count must be between 1 and {MAX_REPEAT}, got {count}",
                             node.right.span, "to leave the layer out, write `layer when COND`"
                             if count < 1 else None)
        size = count * unrolled_size(item)
        if size > MAX_OPS:  # nested repeats multiply: refuse before unrolling
            raise self.error("E0501", f"this repeat unrolls to {size} layers, more "
                             f"than the limit of {MAX_OPS}", node.span)
        if isinstance(item, NamedT):
            raise self.error("E0311", "name the repeat, not the repeated layer", item.name_span,
                             f"write `{item.name}: layer * {count}`")
        return RepeatT(node.span, item=item, count=count)

    def tensor_binop(self, op, left, right, node: S.BinOp, scope: Scope, hint):
        kinds = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "**": "pow",
                 "==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
        if op not in kinds:
            raise self.error("E0314", f"`{op}` is not defined on tensors", node.span,
                             "tensors support + - * / ** @ and the comparisons == != < <= > >=")
        for side, sspan in ((left, node.left.span), (right, node.right.span)):
            if not isinstance(side, (Value, int, float)) or isinstance(side, bool):
                raise self.error("E0314", f"cannot combine a tensor with {describe(side)} by `{op}`",
                                 sspan)
        if isinstance(left, Value) and isinstance(right, Value):
            return self.flow.apply_kind(kinds[op], [left, right], {}, scope, node.span, hint)
        if op == "@":
            raise self.error("E0314", "`@` needs two tensors", node.span)
        tensor, number = (left, right) if isinstance(left, Value) else (right, left)
        if op == "**" and tensor is right:
            raise self.error("E0314", "`number ** tensor` is not supported", node.span,
                             "a tensor to a power is `x ** number` or pow(x, y) with tensors; "
                             "a number to a tensor's power is exp(x * log(number))")
        if kinds[op] in _COMPARE:   # `0 < x` is `x > 0`; a number keeps its type (`ids != 0`)
            kind = _COMPARE_SWAPPED[kinds[op]] if tensor is right else kinds[op]
            return self.flow.apply_kind(kind, [tensor], {"other": (number, node.span)}, scope,
                                        node.span, hint)
        kind = {"-": "rsub", "/": "rdiv"}[op] if op in "-/" and tensor is right else kinds[op]
        return self.flow.apply_kind(kind, [tensor], {"other": (float(number), node.span)},
                                    scope, node.span, hint)

    def eval_Pipe(self, node: S.Pipe, scope: Scope, hint):
        left = self.flow.force(self.eval(node.left, scope, hint), scope, hint)
        if left is POISON:
            raise Abort()
        ins = list(left) if isinstance(left, tuple) else [left]
        for i, v in enumerate(ins):
            if isinstance(v, Template):
                raise self.error("E0330", f"a flow starts from a tensor, not {describe(v)}",
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
            raise self.error("E0318", f"{describe(tmpl)} is not a layer", stage.span,
                             "the right of `->` is a layer such as relu or conv2d(64, 3)")
        return self.flow.apply(tmpl, ins, scope, hint)

    def eval_When(self, node: S.When, scope: Scope, hint):
        raise self.error("E0319", "`when` goes on a stage or a statement", node.span,
                         "write `x -> layer when cond` or `name: layer when cond`")

    def eval_Named(self, node: S.Named, scope: Scope, hint):
        name = self.child_name(node, scope)
        value = self.eval(node.value, scope, hint)
        if not isinstance(value, Template):
            raise self.error("E0318", f"only layers can be named; this is {describe(value)}",
                             node.value.span)
        if isinstance(value, ModRef):
            raise self.error("E0205", f"`{'.'.join(value.path)}` is already a layer; reusing it "
                             f"shares its weights, so it keeps its name", node.name_span,
                             f"write just `{'.'.join(value.path)}`")
        named = NamedT(node.span, bound=value.bound, bound_kw=value.bound_kw, name=name,
                       name_span=node.name_span, item=value)
        return named

    def eval_Call(self, node: S.Call, scope: Scope, hint):
        func = self.eval(node.func, scope)
        if isinstance(func, Builtin):
            return self.builtin(func.name, node, scope)
        if isinstance(func, (KindT, BlockT)) and not (func.pos or func.kw):
            if (isinstance(func, KindT) and isinstance(node.func, S.Name)
                    and node.func.id in NUMERIC_BUILTINS):
                # a layer kind that is also a function on numbers (`pow`, and `abs`, `log`...):
                # numbers alone, as many as the function takes, decide: `pow(2, 3)` is 8, and
                # `pow(x, 2.0)`, `x -> pow(2.0)` and `pow(other=2.0)` are the layer
                args = [self.flow.force(self.eval(a.value, scope), scope) for a in node.args]
                lo, hi = ARITY[node.func.id]
                if lo <= len(args) <= hi and all(is_plain(a) for a in args) \
                        and not any(a.name for a in node.args):
                    return call_builtin(self.error, node.func.id, args, node)
                return self.call_template(func, node, scope, args)
            return self.call_template(func, node, scope)
        if isinstance(func, ModRef):
            tensors, rest = self.split_args(node, scope)
            if rest:
                path = ".".join(func.path)
                hides = len(func.path) == 1 and func.path[0] in REGISTRY
                raise self.error("E0302", f"`{path}` is an existing layer; it takes only tensors",
                                 rest[0][2], f"the layer named `{path}` in this block hides the "
                                 f"layer kind `{path}`: rename that layer (e.g. `{path}_1:`) to "
                                 "use the kind here" if hides else
                                 f"to apply it again, write `x -> {path}`")
            func = ModRef(node.span, path=func.path, child=func.child, scope=func.scope)
            func.bound = [t for t, _ in tensors if not isinstance(t, str)]
            return func
        raise self.error("E0320", f"{describe(func)} cannot be called", node.func.span,
                         self.shadow_help(node.func, scope))

    def shadow_help(self, node: S.Node, scope: Scope) -> str | None:
        """When a local name, parameter or constant hides a layer kind or block of that name
        (a model parameter `dropout = 0.5` hides the layer `dropout`), say so."""
        if not isinstance(node, S.Name):
            return None
        name = node.id
        hidden = ("layer kind" if name in REGISTRY else
                  "block" if name in self.ctx.program.definitions else None)
        if hidden is None:
            return None
        if name in scope.locals or name in scope.layers:
            by = "a name defined in this block"
        elif name in scope.params:
            by = "a parameter"
        elif name in self.ctx.program.consts:
            by = "a constant"
        else:
            return None
        return f"`{name}` here is {by}, which hides the {hidden} `{name}`: rename one of them"

    def split_args(self, node: S.Call, scope: Scope):
        """(tensor args as (value, name|None)), (other args as (name|None, value, span))."""
        tensors, rest = [], []
        for arg in node.args:
            v = self.flow.force(self.eval(arg.value, scope), scope)
            if isinstance(v, Value):
                tensors.append((v, arg.name))
            elif isinstance(v, tuple) and v and all(isinstance(x, Value) for x in v) and arg.name is None:
                tensors.extend((x, None) for x in v)
            else:
                rest.append((arg.name, v, arg.value.span))
        return tensors, rest

    def call_template(self, func, node: S.Call, scope: Scope, values: list | None = None):
        """A layer kind or block called with arguments; `values` are the arguments when they were
        evaluated already (each is evaluated once: a tensor argument may apply layers)."""
        bound, bound_kw, pos, kw = [], {}, [], {}
        tie = None
        for i, arg in enumerate(node.args):
            if arg.name == "tie" and isinstance(func, KindT):
                self.tie_in_scope(arg.value, scope)
            v = values[i] if values is not None else self.flow.force(self.eval(arg.value, scope), scope)
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
                    raise self.error("E0322", f"`tie` names a layer, not {describe(v)}",
                                     arg.value.span, TIE_SCOPE)
                tie = (v, arg.span)
            else:
                kw[arg.name] = (v, arg.span)
        if isinstance(func, KindT):
            return KindT(node.span, bound=bound, bound_kw=bound_kw, cls=func.cls, pos=pos, kw=kw,
                         tie=tie)
        return BlockT(node.span, bound=bound, bound_kw=bound_kw, defn=func.defn, pos=pos, kw=kw)

    def tie_in_scope(self, node: S.Node, scope: Scope) -> None:
        """`tie=` names a layer of the definition it is written in (`wte`, or `blocks.0.fc` inside
        one of its children); a name it cannot see is told what the scope is."""
        root = node
        while isinstance(root, S.Attr):
            root = root.target
        if not isinstance(root, S.Name) or root.id in scope.layers or root.id in scope.locals \
                or root.id in scope.params:
            return
        names = [n for n in scope.layers if n]
        if self.ctx.stack:
            where = f"the block `{self.ctx.stack[-1][0]}`"
            block = self.ctx.stack[-1][0]
            help = ("a block sees its own layers and its parameters, not the model's: pass the "
                    f"layer in, as PyTorch passes modules to a constructor: add a parameter "
                    f"`{root.id}` to `{block}`, call `{block}(..., {root.id}={root.id})`, and keep "
                    f"`tie={root.id}`")
        else:
            where = "the model"
            help = ("tie to a layer defined before this one" +
                    (f": {', '.join(f'`{n}`' for n in names)}" if names else ""))
        raise self.error("E0322", f"`tie` names a layer of {where}, and `{root.id}` is not one",
                         root.span, did_you_mean(root.id, names) or help)

    def builtin(self, name: str, node: S.Call, scope: Scope):
        args = [self.flow.force(self.eval(a.value, scope), scope) for a in node.args]
        return call_builtin(self.error, name, args, node)

    def tensor(self, v, span: Span) -> Value:
        if v is POISON:
            raise Abort()
        if not isinstance(v, Value):
            raise self.error("E0330", f"expected a tensor, got {describe(v)}", span)
        return v

    def value(self, v, span: Span):
        if v is POISON:
            raise Abort()
        if isinstance(v, (Value, Template, Builtin)):
            raise self.error("E0331", f"expected a plain value, got {describe(v)}", span)
        return v

    def truth(self, v, span: Span) -> bool:
        if not isinstance(v, bool):
            raise self.error("E0332", f"a condition must be true or false, got {describe(v)}", span,
                             "use true or false, or a comparison such as `depth > 1`")
        return v

    def condition(self, node: S.Node, scope: Scope) -> bool:
        v = self.eval(node, scope)
        if isinstance(v, Value):   # `when x > 0`: a mask, not one decision for the whole model
            raise self.error("E0332", f"a condition must be true or false, got a tensor {v.type}",
                             node.span, "`when` decides once, from numbers and shapes such as "
                             "`channels(x) > 1`; to choose per element, use where(x > 0, a, b)")
        return self.truth(self.value(v, node.span), node.span)


_COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
_COMPARE_SWAPPED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
