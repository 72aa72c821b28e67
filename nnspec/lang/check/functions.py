"""The language's builtin functions: `channels`, `size` and `ndim` of a tensor's type, and those
on numbers (arithmetic.py). They run at check time on values already evaluated."""
from __future__ import annotations

from typing import Callable

from nnspec.lang import syntax as S
from nnspec.ir import Value
from nnspec.layers import ShapeError
from nnspec.layers.base import norm_dim
from nnspec.lang.check.arithmetic import numeric_builtin
from nnspec.lang.check.values import Abort


def call_builtin(error: Callable[..., Abort], name: str, args: list, node: S.Call):
    """The builtin `name` applied to `args`, the call's arguments as evaluated; `error` is the
    checker's (Context.error), which reports and returns the exception to raise."""
    if any(a.name for a in node.args):
        raise error("E0302", f"`{name}` takes no named arguments", node.span)
    if name in ("channels", "ndim", "size"):
        need = 2 if name == "size" else 1
        if len(args) != need or not isinstance(args[0], Value):
            raise error("E0302", f"`{name}` takes {'a tensor and a dim' if need == 2 else 'a tensor'}",
                        node.span)
        shape = args[0].type.shape
        if name == "ndim":
            return len(shape) + 1
        if name == "channels":
            if not shape:
                raise error("E0402", "a tensor with only a batch dim has no channels",
                            node.span)
            return shape[0]
        dim = args[1]
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise error("E0302", "`size` takes an integer dim", node.args[1].span)
        try:
            return shape[norm_dim(dim, len(shape), "size")]
        except ShapeError as err:
            raise error("E0402", err.message, node.args[1].span, err.help) from None
    return numeric_builtin(error, name, args, [a.value.span for a in node.args], node.span)
