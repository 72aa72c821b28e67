"""Layer application and shape inference: a layer kind's arguments validated, its inputs checked,
its output types inferred, and the IR op that applies it recorded.

`make_layer` turns a `KindT` (a kind with arguments as written) into the kind's Pydantic model,
with one located error per bad argument; `infer` asks the kind for its output types; `emit`
appends the op to the module being built. Which module a template becomes is decided by the
elaborator; this module handles single layers and ops.
"""
from __future__ import annotations

import functools
from typing import Any

from pydantic import ValidationError

from nnspec.lang.diagnostics import Span, did_you_mean
from nnspec.ir import Leaf, Op, Seq, Value
from nnspec.layers import Layer, ShapeError, T, fmt_shape
from nnspec.lang.check.context import Context
from nnspec.lang.check.ledger import ParamLedger
from nnspec.lang.check.templates import KindT, ModRef, Template
from nnspec.lang.check.values import Abort, Builtin, Scope, describe, show, type_hint


class LayerApplier:
    def __init__(self, ctx: Context, ledger: ParamLedger):
        self.error = ctx.error
        self.ledger = ledger

    def emit(self, target, layer, ins, kw, scope: Scope, span: Span, hint: str | None,
             reuse: bool = False):
        """Record the op applying `target` (a child module, or None for a function) to `ins` and
        keyword tensors `kw`; returns its output tensor, or a tuple of them."""
        outs = self.infer(target, layer, ins, kw, span)
        if kw and layer is not None:
            self.check_keywords(layer, target is None, [v.type for v in ins],
                                {k: v.type for k, v in kw.items()}, span)
        self.ledger.add_op(span)
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
            return list(target.outs) or [target.out]
        return [v.type for v in target.outputs]

    def layer_inputs(self, layer: Layer, ins: list[Value], kw: dict[str, Value], span: Span):
        spec = type(layer).inputs
        required, optional, variadic = input_spec(type(layer))
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


    def build_leaf(self, tmpl: KindT, ins: list[T], kw: dict[str, Value], in_list: bool):
        """The module for a layer kind with its arguments, on inputs of types `ins` (and keyword
        tensors `kw`), counted in the ledger; returns it and its output types. Emits no op."""
        layer = self.make_layer(tmpl)
        if in_list and getattr(type(layer), "functional_only", False):
            raise self.error("E0324", f"{layer.kind} with a keyword tensor or `tie=` cannot "
                             "stand in a list or repeat", tmpl.span, "a list passes its tensors "
                             f"in order: apply it in the flow, e.g. `x -> [...] -> {layer.kind}(...)`")
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
        self.ledger.count(leaf, tmpl.span)
        return leaf, outs

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
                                 f"{describe(value)}", spans[key])
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
                if not fname:   # a rule over several arguments (a model-level validator)
                    diag = self.error("E0329", f"invalid arguments for {cls.kind}: {msg}",
                                      tmpl.span)
                elif e["type"] == "missing":
                    diag = self.error("E0328", f"{cls.kind} needs argument `{fname}`", tmpl.span,
                                      f"e.g. {cls.kind}({', '.join(f for f in fields if cls.model_fields[f].is_required())})")
                else:
                    got = data.get(fname)
                    shown = "" if ", got " in msg else f", got {show(got)}"
                    diag = self.error("E0329", f"invalid `{fname}` for {cls.kind}: {msg}{shown}",
                                      span, type_hint(cls, fname))
                first = first or diag
                break  # one error per layer: union members repeat the same complaint
            raise first if first else Abort() from None

    def reuse(self, ref: ModRef, ins: list[Value], kw, scope: Scope, hint):
        """Apply an existing child of this block again: the op shares its weights."""
        child = ref.child
        if ref.scope is not scope:
            raise self.error("E0326", "only layers of this block can be reused", ref.span)
        if isinstance(child, Leaf):
            types = self.layer_inputs(child.layer, ins, kw, ref.span)
            self.ledger.check_shared_leaf(ref, types)
            return self.emit(child, child.layer, ins, kw, scope, ref.span, hint, reuse=True)
        self.ledger.check_shared_module(ref, [v.type for v in ins])
        return self.emit(child, None, ins, kw, scope, ref.span, hint, reuse=True)


@functools.lru_cache(maxsize=None)
def input_spec(cls: type[Layer]) -> tuple[list[str], list[str], bool]:
    """(required, optional, variadic) from a kind's `inputs` declaration."""
    spec = cls.inputs
    required = [n for n in spec if not n.endswith("?") and not n.startswith("*")]
    optional = [n[:-1] for n in spec if n.endswith("?")]
    return required, optional, any(n.startswith("*") for n in spec)
