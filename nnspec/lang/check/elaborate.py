"""Elaboration: running a definition's statements, and turning templates into IR modules.

A model's body runs once; a block's body runs once per distinct call (its arguments and input
types), and each further call with the same ones gets a copy of that module, counted again in
the ledger. Applying a template to tensors decides what it becomes: a layer kind a leaf
(apply.py builds it), a block its own module, a list or repeat a `Seq` of modules, a named child
applied again an op sharing its weights. Block calls and aliases are blocks.py's.
"""
from __future__ import annotations

from typing import Any

from nnspec.lang import syntax as S
from nnspec.lang.diagnostics import Span, did_you_mean
from nnspec.ir import Leaf, ModuleDef, Seq, Value
from nnspec.layers import REGISTRY, T
from nnspec.lang.check.apply import LayerApplier
from nnspec.lang.check.blocks import BlockCalls
from nnspec.lang.check.context import Context
from nnspec.lang.check.expressions import Evaluator
from nnspec.lang.check.ledger import ParamLedger
from nnspec.lang.check.templates import (
    BlockT, KindT, ModRef, NamedT, RepeatT, SeqT, Template, satisfied
)
from nnspec.lang.check.values import (
    DTYPES, POISON, Abort, Builtin, Scope, describe, from_python, show, signature
)


# how the items of a list or repeat pass tensors on, for the diagnostics that say they do not
CHAIN_HELP = ("a list chains its items: each item's outputs are the next item's inputs, so a "
              "block repeated with several tensors declares as many as it gives, as in "
              "`in x, bias` ... `out x, bias`")


class Elaborator(BlockCalls):
    """Elaborates definitions into IR modules; holds the collaborators it shares with them."""

    def __init__(self, ctx: Context, max_params: int):
        self.ctx = ctx
        self.error = ctx.error
        self.ledger = ParamLedger(ctx, max_params)
        self.layers = LayerApplier(ctx, self.ledger)
        self.expr = Evaluator(ctx, flow=self)
        # per distinct block call (name, definition, arguments, input types): its module and the
        # (parameters, operations) it added, so a repeated call is a copy counted again
        self.cache: dict[Any, tuple[ModuleDef, tuple[int, int]]] = {}

    def check_model(self, defn: S.Definition, overrides: dict[str, Any],
                    inputs: list[T] | None = None) -> ModuleDef:
        """The model `defn` (or a block given the input types `inputs`) as a root module."""
        params = self.bind_params(defn, [], {k: (from_python(v), defn.span)
                                             for k, v in overrides.items()},
                                  defn.span, from_cli=True)
        module = ModuleDef(defn.name, signature(defn.name, params), defn.span)
        scope = Scope(module, params)
        given = None if inputs is None else [Value(t, f"x{i}") for i, t in enumerate(inputs)]
        self.run_body(defn, scope, inputs=given)
        return module

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
                values[p.name] = self.default_value(p, scope)
        return values

    def default_value(self, p: S.Param, scope: Scope):
        """A parameter's default: a plain value, or a layer (`act = relu`, `norm = layernorm(eps=
        1e-6)`) as a call may pass one. (No tensor or existing layer is in scope here.)"""
        value = self.expr.eval(p.default, scope)
        if isinstance(value, Template):
            return value
        if isinstance(value, Builtin):
            raise self.error("E0331", f"a parameter's default is a number, a string, a boolean, a "
                             f"list of them, or a layer; got {describe(value)}", p.default.span,
                             f"`{value.name}` is a function on numbers: call it, e.g. "
                             f"`{value.name}(2, 3)`, or name a layer kind such as `act = relu`")
        return self.expr.value(value, p.default.span)

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
                             self.ctx.stack[-1][1] if self.ctx.stack else defn.span,
                             help="the tensors a block is given (the flow's, then those in its "
                             "arguments) fill its `in` declarations in order" + (
                                 "; several tensors flow in together as `(x, bias) -> layer`"
                                 if len(inputs) < len(declared) else ""),
                             notes=[(f"`{defn.name}` declares its inputs here",
                                     declared[0][1] if declared else defn.span)])
        outputs_seen = False
        errors_before = len(self.ctx.reporter.diagnostics)
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
                    module.outputs = [
                        self.expr.tensor(self.force(self.expr.eval(v, scope), scope), v.span)
                        for v in stmt.values]
                elif isinstance(stmt, S.Const):
                    self.const(stmt, scope)
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
            except Abort:
                for name in _names_defined(stmt):
                    if name not in scope.layers:
                        scope.locals[name] = POISON
                scope.cursor = POISON
        if len(self.ctx.reporter.diagnostics) == errors_before:
            self.place_declared(scope)
        if not outputs_seen:
            if scope.cursor is POISON:
                raise Abort()
            module.outputs = [self.expr.tensor(scope.cursor, defn.span)]
        if any(o is POISON for o in module.outputs):
            raise Abort()
        if len(self.ctx.reporter.diagnostics) == errors_before:  # a failed use would look like none
            self.check_used(results, scope)

    def const(self, stmt: S.Const, scope: Scope) -> None:
        """`const n = expr` binds a value; `const name = layer` declares the layer `name`."""
        value = self.expr.eval(stmt.value, scope)
        if isinstance(value, Template) and not isinstance(value, (ModRef, NamedT)) \
                and not value.bound and not value.bound_kw:
            self.declare(stmt, value, scope)
            return
        self.bind_local(scope, stmt.name, self.expr.value(value, stmt.value.span), stmt.span)

    def declare(self, stmt: S.Const, tmpl: Template, scope: Scope) -> None:
        """`const reduction = linear(2 * c, bias=false)`: the layer `reduction`, built where the
        flow first applies it (`-> reduction`, shared where applied again), but placed among the
        module's children here, as PyTorch orders them by their assignment in __init__, not by
        their use in forward (torchvision's PatchMerging: `reduction` before `norm`)."""
        if stmt.name in scope.layers:
            raise self.error("E0205", f"`{stmt.name}` already names a layer in this block", stmt.span)
        self.bind_local(scope, stmt.name, NamedT(stmt.span, name=stmt.name, name_span=stmt.span,
                                                 item=tmpl), stmt.span)
        scope.declared[stmt.name] = (len(scope.module.children), stmt.span)

    def place_declared(self, scope: Scope) -> None:
        """Move each declared layer to the place of its declaration among the children."""
        if not scope.declared:
            return
        at: dict[int, tuple[float, int]] = {}
        for seq, (name, (mark, span)) in enumerate(scope.declared.items()):
            child = scope.layers.get(name)
            if child is None:
                raise self.error("E0334", f"the layer `{name}` is declared but never applied",
                                 span, f"apply it in the flow, `x -> {name}`, or remove it")
            # before the children made after the declaration, in the order of declaration
            at[id(child)] = (mark - 0.5, seq)
        order = sorted(range(len(scope.module.children)),
                       key=lambda i: at.get(id(scope.module.children[i][1]), (i, 0)))
        scope.module.children = [scope.module.children[i] for i in order]

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
            v = self.expr.value(self.expr.eval(item, scope), item.span)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise self.error("E0307", f"a dimension must be a positive integer, got {show(v)}",
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
            if not self.expr.condition(node.cond, scope):
                return None
            node = node.item
        value = self.expr.eval(node, scope, hint=hint)
        if isinstance(value, Template) and not satisfied(value):
            cursor = scope.cursor
            if cursor is None:
                raise self.error("E0310", "this layer has no input", node.span,
                                 "declare inputs first, or write `x -> layer`")
            return self.apply(value, [self.expr.tensor(cursor, node.span)], scope, hint)
        return self.force(value, scope, hint)

    def force(self, v, scope: Scope, hint: str | None = None):
        """A template called with all the tensors it needs is applied now; anything else is
        returned as is (a template still waiting for its first input stays a template)."""
        if isinstance(v, Template) and (v.bound or v.bound_kw) and satisfied(v):
            return self.apply(v, [], scope, hint)
        return v

    def apply(self, tmpl: Template, ins: list[Value], scope: Scope, hint: str | None,
              position: str | None = None):
        """Apply a template to `ins` (prepended to its bound tensors) inside `scope`. An item of
        an unnamed list comes with its `position`: its name if it becomes a child."""
        name = None
        if isinstance(tmpl, NamedT):
            if name is None and scope.locals.get(tmpl.name) is tmpl:  # a declared layer's first use
                del scope.locals[tmpl.name]
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
            return self.layers.reuse(tmpl, ins, kw, scope, hint)
        if isinstance(tmpl, KindT) and getattr(tmpl.cls, "functional_only", False):
            layer = self.layers.make_layer(tmpl)
            if tmpl.tie:
                raise self.error("E0322", f"{layer.kind} has no weight to tie", tmpl.tie[1])
            return self.layers.emit(None, layer, ins, kw, scope, tmpl.span, hint or name)
        if name is None and position is None and isinstance(tmpl, (SeqT, RepeatT)):
            # an unnamed list applies its items in this body, each numbered by its position
            # (counted on across the body's unnamed lists, so two lists never clash)
            items = tmpl.items if isinstance(tmpl, SeqT) else [tmpl.item] * tmpl.count
            out: Any = None
            for i, item in enumerate(items):
                if i == 0:
                    given = ins
                else:  # what the item before gave, one tensor or several (see check_chain)
                    given = list(out) if isinstance(out, tuple) else [self.expr.tensor(out, tmpl.span)]
                    bare = [it.item if isinstance(it, NamedT) else it for it in items[i - 1:i + 1]]
                    self.check_chain(bare[0], bare[1], [v.type for v in given], len(bare[1].bound), i)
                scope.numbered += 1
                out = self.apply(item, given, scope, hint, str(scope.numbered - 1))
            return out
        child, _ = self.instantiate(tmpl, [v.type for v in ins], kw, scope, name)
        if name is None and isinstance(child, Leaf) and not child.layer.params(child.ins) \
                and not child.layer.buffers(child.ins) and not kw \
                and child.layer.functional_source(["x"] * len(ins), child.ins) is not None:
            return self.layers.emit(None, child.layer, ins, kw, scope, tmpl.span, hint)
        if name is None and position is not None:
            if position in scope.layers:
                raise self.error("E0205", f"`{position}` is already a layer of this block", tmpl.span,
                                 "items of an unnamed list are named by their position (0, 1, ...):"
                                 f" rename the layer named \"{position}\"")
            name = position
        scope.module.children.append((name, child))
        if name is not None:
            scope.layers[name] = child
        if isinstance(child, Leaf) and isinstance(tmpl, KindT) and tmpl.tie:
            self.ledger.tie(child, tmpl.tie, scope)
        return self.layers.emit(child, child.layer if isinstance(child, Leaf) else None, ins, kw,
                                scope, tmpl.span, hint or name)

    def apply_kind(self, kind: str, ins, kw_args: dict, scope: Scope, span: Span, hint):
        tmpl = KindT(span, cls=REGISTRY[kind], kw=kw_args)
        return self.apply(tmpl, ins, scope, hint)

    def instantiate(self, tmpl: Template, ins: list[T], kw: dict[str, Value], scope: Scope,
                    name: str | None, in_list: bool = False):
        tmpl = self.expand_alias(tmpl)
        if isinstance(tmpl, NamedT):
            raise self.error("E0311", "only a list item or a statement can be named",
                             tmpl.name_span, "name the items of a list inside it, "
                             "`[conv0: conv2d(64, 7), norm0: batchnorm2d]`; quote a name that is "
                             'not an identifier, `"block1-0": ...`')
        if isinstance(tmpl, KindT):
            if in_list and getattr(tmpl.cls, "functional_only", False) and not kw \
                    and not tmpl.tie:
                return self.function_module(tmpl, ins)
            return self.layers.build_leaf(tmpl, ins, kw, in_list)
        if isinstance(tmpl, BlockT):
            module = self.instantiate_block(tmpl, ins, kw, scope)
            return module, [v.type for v in module.outputs]
        if isinstance(tmpl, (SeqT, RepeatT)):
            items = tmpl.items if isinstance(tmpl, SeqT) else [tmpl.item] * tmpl.count
            children, extras, keywords, names, cur = [], [], [], [], list(ins)
            bare = [item.item if isinstance(item, NamedT) else item for item in items]
            for i, item in enumerate(items):
                names.append(item.name if isinstance(item, NamedT) else None)
                item = bare[i]
                extra = list(item.bound)
                if i:
                    self.check_chain(bare[i - 1], item, cur, len(extra), i)
                child, outs = self.instantiate(item, cur + [v.type for v in extra],
                                               dict(item.bound_kw), scope, None, in_list=True)
                if i and len(outs) != len(cur) and len(cur) > 1:
                    raise self.error("E0325", f"item {i} of this list gives {len(outs)} tensors "
                                     f"where the items before it pass {len(cur)} on", item.span,
                                     CHAIN_HELP)
                children.append(child)
                extras.append(extra + list(item.bound_kw.values()))
                keywords.append(tuple(item.bound_kw))
                cur = outs
            seq = Seq(children, extras, list(ins), tmpl.span, cur[0], keywords, names,
                      outs=list(cur) if len(cur) > 1 else [])
            return seq, cur
        if isinstance(tmpl, ModRef):
            raise self.error("E0326", f"`{'.'.join(tmpl.path)}` is an existing layer and cannot be "
                             "placed in a list or repeat", tmpl.span)
        raise self.error("E0318", "not a layer", tmpl.span)

    def function_module(self, tmpl: KindT, ins: list[T]):
        """A function (permute, add, ...) as a list item: nn.Sequential holds modules, so it
        becomes a module of its own whose forward is the function, as torchvision writes
        `Permute([0, 2, 3, 1])` inside a Sequential; it takes its place in the numbering."""
        layer = self.layers.make_layer(tmpl)
        module = ModuleDef(layer.kind.capitalize(),
                           signature(layer.kind, layer.model_dump(exclude_defaults=True)),
                           tmpl.span)
        scope = Scope(module, {})
        module.inputs = [Value(t, "x" if i == 0 else f"x{i}") for i, t in enumerate(ins)]
        module.input_names = [v.hint for v in module.inputs]
        out = self.layers.emit(None, layer, list(module.inputs), {}, scope, tmpl.span, "x")
        module.outputs = list(out) if isinstance(out, tuple) else [out]
        return module, [v.type for v in module.outputs]

    def check_chain(self, before: Template, item: Template, given: list[T], extra: int,
                    i: int) -> None:
        """A list chains its items: item i takes what item i-1 gave (and its own extra tensors).
        A block that declares another number of inputs is told so here, with both types."""
        inner = self.expand_alias(item)
        if not isinstance(inner, BlockT):
            if len(given) > 1 and isinstance(inner, KindT) and len(inner.cls.inputs) == 1:
                raise self.error("E0325", f"item {i} of this list is a `{inner.cls.kind}`, which "
                                 f"takes one tensor, but the item before it gives {len(given)} ("
                                 f"{', '.join(map(str, given))})", item.span, CHAIN_HELP)
            return
        takes = sum(len(stmt.decls) for stmt in inner.defn.body if isinstance(stmt, S.Inputs))
        if takes and takes != len(given) + extra:
            gives = ", ".join(map(str, given))
            raise self.error("E0325", f"item {i} of this list, `{inner.defn.name}`, takes {takes} "
                             f"tensor{'s' if takes != 1 else ''}, but the item before it gives "
                             f"{len(given)} ({gives})" + (f" and it is given {extra} more"
                                                          if extra else ""),
                             item.span, CHAIN_HELP)


def _names_defined(stmt: S.Node) -> list[str]:
    """Names a failed statement would have defined, so later uses stay quiet."""
    if isinstance(stmt, S.Assign):
        return list(stmt.names)
    node = stmt.value if isinstance(stmt, S.ExprStmt) else None
    while isinstance(node, (S.When, S.Pipe)):
        node = node.item if isinstance(node, S.When) else node.stage
    return [node.name] if isinstance(node, S.Named) else []
