"""The language's builtin functions: `channels`, `size` and `ndim` of a tensor's type, and `min`,
`max`, `int`, `float` of numbers. They run at check time on values already evaluated."""
from __future__ import annotations

from typing import Callable

from nnspec.lang import syntax as S
from nnspec.ir import Value
from nnspec.layers import ShapeError
from nnspec.layers.base import norm_dim
from nnspec.lang.check.values import MAX_INT, Abort


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
    numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if len(numbers) != len(args) or not args or (name in ("int", "float") and len(args) != 1):
        raise error("E0302", f"`{name}` takes numbers", node.span)
    if name == "int":
        if abs(args[0]) > MAX_INT:
            raise error("E0317", "number out of range", node.span,
                        f"values are limited to magnitude {MAX_INT}")
        return int(args[0])
    if name == "float":
        return float(args[0])
    return min(args) if name == "min" else max(args)
