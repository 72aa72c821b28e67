"""Parameter accounting and weight sharing: the running totals, the limits, `tie=` and reuse.

Every layer instantiated adds its parameter count; a model over the limit (`--max-params`) is
refused the moment its running total passes it, before anything else is built. Layers and
operations are counted too, so nested repeats cannot unroll without bound. Sharing weights, by
applying a named layer again or by `tie=`, is allowed only where the shapes agree.
"""
from __future__ import annotations

from nnspec.lang.diagnostics import SpecError, Span
from nnspec.ir import Leaf, child_ins
from nnspec.layers import ShapeError, T
from nnspec.layers.base import numel
from nnspec.lang.check.context import Context
from nnspec.lang.check.templates import ModRef
from nnspec.lang.check.values import MAX_OPS, Scope


class ParamLedger:
    def __init__(self, ctx: Context, max_params: int):
        self.ctx = ctx
        self.error = ctx.error
        self.max_params = max_params
        self.params_total = 0
        self.ops = 0  # operations emitted and layers instantiated

    def mark(self) -> tuple[int, int]:
        """The totals now, to measure what a block adds (see `since`)."""
        return self.params_total, self.ops

    def since(self, mark: tuple[int, int]) -> tuple[int, int]:
        """(parameters, operations) added since `mark`."""
        return self.params_total - mark[0], self.ops - mark[1]

    def charge(self, cost: tuple[int, int], span: Span) -> None:
        """Count a cached block's (parameters, operations) again, without walking it."""
        params, ops = cost
        self.params_total += params
        self.check_limit(span)
        self.ops += ops
        if self.ops > MAX_OPS:
            raise self.error("E0501", f"the model has more than {MAX_OPS} operations", span)

    def add_op(self, span: Span) -> None:
        """Count one emitted operation."""
        self.ops += 1
        if self.ops > MAX_OPS:
            raise self.error("E0501", f"the model has more than {MAX_OPS} operations", span)

    def count(self, leaf: Leaf, span: Span) -> None:
        """Count a new layer's parameters (and the layer itself) against the limits."""
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
            self.ctx.reporter.error("E0501", f"the model exceeds the parameter limit of "
                                f"{self.max_params:,} (at least {self.params_total:,} so far)",
                                span, "raise it with --max-params N if this is intended")
            raise SpecError(self.ctx.reporter.diagnostics, self.ctx.reporter.dropped)

    def check_shared_leaf(self, ref: ModRef, types: list[T]) -> None:
        """Applying the layer `ref` again to inputs of `types` must fit the weights it has."""
        child = ref.child
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

    def check_shared_module(self, ref: ModRef, got: list[T]) -> None:
        """Applying the block or list `ref` again needs exactly the input types it was built for."""
        want = child_ins(ref.child)
        if want != got:
            raise self.error("E0404", f"`{'.'.join(ref.path)}` was built for "
                             f"{', '.join(map(str, want))}, not {', '.join(map(str, got))}", ref.span,
                             f"for a new layer with its own weights, give it a new name, e.g. "
                             f"`{ref.path[-1]}2: ...`")

    def tie(self, leaf: Leaf, tie: tuple[ModRef, Span], scope: Scope) -> None:
        """`tie=other`: `leaf` uses `other`'s weight, which must have the same shape. `other` is a
        layer of this definition, or one passed in as a block argument (a layer of the model or
        of an enclosing block): that tie is held by the module until check moves it to the root
        (ir.hoist_ties), so every call of the block ties to the one layer."""
        ref, span = tie
        target = ref.child
        name = ".".join(ref.path)
        mine = leaf.layer.params(leaf.ins).get("weight")
        if not isinstance(target, Leaf):
            raise self.error("E0322", f"`{name}` is not a single layer, so it has no one weight "
                             "to tie to", span, "tie to one layer inside it, e.g. "
                             f"`tie={name}.LAYER`, or to a layer that has a weight")
        theirs = target.layer.params(target.ins).get("weight")
        if mine is None or theirs is None:
            whose = f"`{name}` ({target.kind})" if theirs is None else f"this {leaf.kind}"
            raise self.error("E0322", f"tie needs a `weight` on both layers, and {whose} has "
                             "none", span)
        if mine != theirs:
            raise self.error("E0405", f"cannot tie weights of shape {list(mine)} to "
                             f"`{name}.weight` of shape {list(theirs)}", span,
                             "tied weights must have the same shape (a head tied to "
                             "embedding(vocab, width) is linear(vocab, bias=false) on width-wide "
                             "inputs)")
        if ref.scope is scope:
            scope.module.ties.append((leaf, "weight", ref.path + ["weight"], span))
        else:
            scope.module.outer_ties.append((leaf, "weight", target, span))
