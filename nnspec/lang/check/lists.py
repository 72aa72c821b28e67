"""Lists: list displays, `*` splices, comprehensions and the names of list items.

`[a, b when c, *more]` is a list of layers (a SeqT) or of plain values (a tuple);
`[item for i in range(n)]` evaluates `item` once per value with the loop names bound as
constants, so its arguments and its name (`f"denselayer{i + 1}": ...`) may use them. A list
item may be named; an unnamed one is numbered by its position, as nn.Sequential numbers it.
"""
from __future__ import annotations

import keyword
from typing import Any

from nnspec.lang import syntax as S
from nnspec.lang.check.templates import NamedT, RepeatT, SeqT, Template, unrolled_size
from nnspec.ir import Value
from nnspec.lang.check.values import MAX_OPS, MAX_REPEAT, describe, is_plain, show
from nnspec.ir.lower import MODULE_ATTRS

# names a child cannot take: nn.Module already has an attribute of that name (add_module refuses)
_TAKEN = MODULE_ATTRS


class ListEvaluator:
    """The list part of the Evaluator (expressions.py), which mixes it in."""

    def eval_ListExpr(self, node: S.ListExpr, scope, hint):
        items: list = []
        nodes: list[S.Node] = []
        for sub in node.items:
            self.list_item(sub, scope, items, nodes)
        return self.finish_list(node, items, nodes)

    def check_size(self, items: list, since: int, total: list[int], span) -> None:
        """Count what items[since:] unroll to into total[0]; lists nest, so a comprehension of
        lists is bounded by the layers it unrolls to, not by its own length."""
        total[0] += sum(unrolled_size(i) if isinstance(i, Template) else 1 for i in items[since:])
        if total[0] > MAX_OPS:
            raise self.error("E0501", f"this list unrolls to more than {MAX_OPS} layers", span)

    def eval_Splice(self, node: S.Splice, scope, hint):
        raise self.error("E0312", "`*items` goes inside a list display", node.span,
                         "write `[*items, more]`, or use the list itself")

    def list_item(self, sub: S.Node, scope, items: list, nodes: list) -> None:
        """Evaluate one item of a list display into `items` (none when its `when` is false)."""
        if isinstance(sub, S.When):
            if not self.condition(sub.cond, scope):
                return  # the item is absent: later items are numbered as if it never was
            sub = sub.item
        if isinstance(sub, S.Splice):
            value = self.eval(sub.value, scope)
            listed = self.flow.expand_alias(value) if isinstance(value, Template) else value
            if isinstance(listed, SeqT) and not listed.bound and not listed.bound_kw:
                items += listed.items
                nodes += [sub] * len(listed.items)
            elif isinstance(listed, tuple):
                items += listed
                nodes += [sub] * len(listed)
            else:
                raise self.error("E0312", f"only a list can be spliced with `*`, not "
                                 f"{describe(value)}", sub.value.span,
                                 "drop the `*` for a single item")
        else:
            item = self.eval(sub, scope)
            if isinstance(item, RepeatT):  # `[a, b * 3]` is [a, b, b, b]
                items += [item.item] * item.count
                nodes += [sub] * item.count
            else:
                items.append(item)
                nodes.append(sub)
        if len(items) > MAX_REPEAT:
            raise self.error("E0315", f"this list holds more than {MAX_REPEAT} items", sub.span)

    def finish_list(self, node: S.Node, items: list, nodes: list[S.Node]):
        if items and all(isinstance(i, Template) for i in items):
            self.check_item_names(items)
            return SeqT(node.span, items=items)
        if any(isinstance(i, (Template, Value, tuple)) and not is_plain(i) for i in items):
            layers = any(isinstance(i, Template) for i in items)  # then the odd one is a non-layer
            bad = next(s for i, s in zip(items, nodes)
                       if (not isinstance(i, Template) if layers else
                           isinstance(i, (Template, Value)) or not is_plain(i)))
            raise self.error("E0312", "a list holds either layers or plain values", bad.span,
                             "a list of layers applies them in turn; numbers go in a layer's "
                             "arguments" if layers else None)
        return tuple(items)

    def check_item_names(self, items: list[Template]) -> None:
        """Two items of one list may not share a name; an unnamed item takes its position."""
        seen: dict[str, Any] = {}
        for i, item in enumerate(items):
            name = item.name if isinstance(item, NamedT) else str(i)
            first = seen.get(name)
            if first is not None and isinstance(item, NamedT):
                again = isinstance(first, NamedT) and first.name_span == item.name_span
                notes = [(f"`{name}` is first used here", first.name_span)] \
                    if isinstance(first, NamedT) and not again else []
                raise self.error("E0205", f"two items of this list are named `{name}`",
                                 item.name_span, _AGAIN_HELP if again else "give each item "
                                 "its own name; unnamed items are named by their position "
                                 "(0, 1, ...)", notes)
            seen.setdefault(name, item)

    def eval_Comprehension(self, node: S.Comprehension, scope, hint):
        values = self.loop_values(node.iter, scope)
        for name in node.targets:
            self.check_loop_name(name, node, scope)
        if len(set(node.targets)) != len(node.targets):
            raise self.error("E0320", "a loop name is given twice", node.target_span)
        items: list = []
        nodes: list[S.Node] = []
        total = [0]
        try:
            for value in values:
                self.bind_loop(node, value, scope)
                before = len(items)
                self.list_item(node.item, scope, items, nodes)
                self.check_size(items, before, total, node.span)
        finally:
            for name in node.targets:
                scope.locals.pop(name, None)
        return self.finish_list(node, items, nodes)

    def bind_loop(self, node: S.Comprehension, value, scope) -> None:
        if len(node.targets) == 1:
            scope.locals[node.targets[0]] = value
            return
        if not isinstance(value, tuple) or len(value) != len(node.targets):
            got = len(value) if isinstance(value, tuple) else 1
            raise self.error("E0309", f"cannot unpack {got} value{'s' if got != 1 else ''} into "
                             f"{len(node.targets)} names", node.target_span,
                             "`for i, w in enumerate(widths)` unpacks (index, value) pairs")
        for name, part in zip(node.targets, value):
            scope.locals[name] = part

    def check_loop_name(self, name: str, node: S.Comprehension, scope) -> None:
        program = self.ctx.program
        by = ("a name defined in this block" if name in scope.locals or name in scope.layers
              else "a parameter" if name in scope.params
              else "a constant" if name in program.consts
              else "a block" if name in program.definitions else None)
        if by is not None:
            raise self.error("E0320", f"the loop name `{name}` hides {by}", node.target_span,
                             "give the loop variable a name of its own")

    def loop_values(self, node: S.Node, scope) -> tuple:
        """What a comprehension loops over: range(...), enumerate(list) or a list of values."""
        func = node.func.id if isinstance(node, S.Call) and isinstance(node.func, S.Name) else None
        if func in ("range", "enumerate") and not self.is_defined(func, scope):
            if any(a.name is not None for a in node.args):
                raise self.error("E0302", f"{func}() takes positional arguments", node.span)
            args = [_listed(self.value(self.eval(a.value, scope), a.value.span))
                    for a in node.args]
            if func == "enumerate":
                if len(args) != 1 or not isinstance(args[0], tuple):
                    raise self.error("E0302", "enumerate() takes one list", node.span,
                                     "e.g. `for i, w in enumerate([64, 128, 256])`")
                return tuple(enumerate(args[0]))
            if not 1 <= len(args) <= 3 or not all(
                    isinstance(a, int) and not isinstance(a, bool) for a in args):
                raise self.error("E0302", "range() takes one to three integers, got "
                                 + ", ".join(show(a) for a in args), node.span,
                                 "range(n), range(start, stop) or range(start, stop, step)")
            if len(args) == 3 and args[2] == 0:
                raise self.error("E0316", "range() step must not be zero", node.args[2].span)
            if len(range(*args)) > MAX_REPEAT:
                raise self.error("E0315", f"range() of {len(range(*args))} values; at most "
                                 f"{MAX_REPEAT}", node.span)
            return tuple(range(*args))
        values = _listed(self.value(self.eval(node, scope), node.span))
        if not isinstance(values, tuple):
            raise self.error("E0312", f"a comprehension loops over a list, not {describe(values)}",
                             node.span, "loop over range(n), enumerate(list) or [v1, v2, ...]")
        return values

    def is_defined(self, name: str, scope) -> bool:
        return (name in scope.locals or name in scope.params or name in scope.layers
                or name in self.ctx.program.consts or name in self.ctx.program.definitions)

    def child_name(self, node: S.Named, scope) -> str:
        """The name a `name: layer` gives: an identifier, or a quoted or generated one that
        state_dict keys can hold (not empty, no `.`)."""
        if node.quoted is None:
            if keyword.iskeyword(node.name) or node.name in _TAKEN:
                what = "a Python keyword" if keyword.iskeyword(node.name) else \
                    "an attribute of torch's nn.Module"
                raise self.error("E0209", f"`{node.name}` cannot name a layer", node.name_span,
                                 f"it is {what}, which the child would clash with; call it e.g. "
                                 f"`{node.name}_`")
            return node.name
        if isinstance(node.quoted, S.Literal):
            name = node.quoted.value
        else:
            name = "".join(p if isinstance(p, str) else self.name_part(p, scope)
                           for p in node.quoted.parts)
        if not name or "." in name or name in _TAKEN:
            why = ("is empty" if not name else "holds a `.`, which separates the parts of a "
                   "state_dict key" if "." in name else "is an attribute of torch's nn.Module")
            raise self.error("E0209", f"the name {show(name)} {why}", node.name_span,
                             "a quoted name is any text without `.`, e.g. \"block1-0\"")
        return name

    def name_part(self, node: S.Node, scope) -> str:
        v = self.value(self.eval(node, scope), node.span)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise self.error("E0331", f"a name is made of integers and strings, not {describe(v)}",
                             node.span, "`//` divides integers to an integer" if isinstance(
                                 v, float) else None)
        return str(v)


def _listed(v):
    """A list given from Python (`nnspec.load(path, config=[6, 12])`) as the tuple a spec's
    list display evaluates to."""
    return tuple(v) if isinstance(v, list) else v


# the same name written once and met twice: a loop, or a list repeated or spliced twice
_AGAIN_HELP = ("one name comes twice: a name made in a loop must differ for each value "
               "(f\"layer{i}\" over distinct i), and a list that is repeated (`items * 2`, a "
               "block alias `A * 2`) cannot hold named items, so name the repeat instead")
