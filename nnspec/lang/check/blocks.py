"""Block calls: a block alias expanded to the template it stands for, and a block instantiated
into its own module, once per distinct call (its arguments and input types); a further call with
the same ones gets a copy of that module, counted again in the ledger.

`BlockCalls` is a part of the Elaborator (elaborate.py), which provides `ctx`, `error`, `expr`,
`ledger`, `cache`, `bind_params` and `run_body`.
"""
from __future__ import annotations

import copy

from nnspec.ir import ModuleDef, Value, clone
from nnspec.layers import T
from nnspec.lang.check.templates import BlockT, ModRef, RepeatT, SeqT, Template
from nnspec.lang.check.values import MAX_DEPTH, Abort, Scope, describe, freeze, signature


class BlockCalls:
    """Expanding aliases and instantiating blocks (a mixin of the Elaborator)."""

    def expand_alias(self, tmpl: Template) -> Template:
        """`block Name(p) = expr`: the template `expr` with the call's parameters bound."""
        while isinstance(tmpl, BlockT) and tmpl.defn.alias is not None:
            defn = tmpl.defn
            stack = self.ctx.stack
            if sum(1 for name, _ in stack if name == defn.name) or len(stack) >= MAX_DEPTH:
                raise self.error("E0502", f"`{defn.name}` uses itself", tmpl.span)
            stack.append((defn.name, tmpl.span))
            try:
                params = self.bind_params(defn, tmpl.pos, tmpl.kw, tmpl.span)
                scope = Scope(ModuleDef(defn.name, "", defn.span), params)
                inner = self.expr.eval(defn.alias, scope)
            finally:
                stack.pop()
            if not isinstance(inner, Template) or isinstance(inner, ModRef):
                raise self.error("E0318", f"`{defn.name}` must stand for a layer or a list of layers, "
                                 f"not {describe(inner)}", defn.alias.span)
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

    def instantiate_block(self, tmpl: BlockT, ins: list[T], kw: dict[str, Value], scope: Scope):
        defn = tmpl.defn
        if len(self.ctx.stack) >= MAX_DEPTH:
            raise self.error("E0502", f"blocks nest more than {MAX_DEPTH} deep (is `{defn.name}` "
                             "recursive?)", tmpl.span)
        if any(name == defn.name for name, _ in self.ctx.stack):
            raise self.error("E0502", f"`{defn.name}` uses itself", tmpl.span,
                             "a block cannot contain itself")
        self.ctx.stack.append((defn.name, tmpl.span))
        try:
            params = self.bind_params(defn, tmpl.pos, tmpl.kw, tmpl.span)
            if kw:
                raise self.error("E0323", f"block `{defn.name}` takes its tensors positionally",
                                 tmpl.span)
            key = (defn.name, id(defn), freeze(params), tuple(ins))
            if key in self.cache:
                cached, cost = self.cache[key]
                self.ledger.charge(cost, tmpl.span)  # counted again, without walking the block
                # a copy, not the cached module: each call is its own module with its own
                # weights, and the passes after check tell modules apart by identity
                return clone(cached)
            module = ModuleDef(defn.name, signature(defn.name, params), defn.span)
            inner = Scope(module, params)
            before = len(self.ctx.reporter.diagnostics)
            mark = self.ledger.mark()
            self.run_body(defn, inner, [Value(t, "x") for t in ins])
            if len(self.ctx.reporter.diagnostics) != before:
                raise Abort()
            self.cache[key] = (module, self.ledger.since(mark))
            return module
        finally:
            self.ctx.stack.pop()
