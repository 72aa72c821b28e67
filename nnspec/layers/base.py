"""The layer registry: one Pydantic model per layer kind, with its shape, parameter, FLOP and
code-generation rules side by side.

A layer kind is a subclass of `Layer` decorated with `@register`. Its fields are the arguments a
spec may pass (positional in field order, or by name); class variables declare its tensor inputs
and documentation. Shapes are per sample: the batch dimension is implicit and never written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from nnspec.layers.registry import Registry

Shape = tuple[int, ...]
ANY_DTYPE = ("float", "long", "bool")  # input_dtypes of a kind that takes every dtype


@dataclass(frozen=True)
class T:
    """The type of a tensor flowing through a spec: per-sample shape and dtype."""

    shape: Shape
    dtype: str = "float"  # float | long | bool

    def __str__(self) -> str:
        return fmt_shape(self.shape) + ("" if self.dtype == "float" else f" {self.dtype}")


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(["B", *map(str, shape)]) + "]"


class ShapeError(Exception):
    """A layer cannot take the tensors given to it; the message names the shapes."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


class Layer(BaseModel):
    """Base of every layer kind. Subclasses override the rules below."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True,
                              defer_build=True)

    kind: ClassVar[str] = ""
    torch_name: ClassVar[str] = ""      # the torch.nn class or function it matches, for docs
    category: ClassVar[str] = "other"   # groups the reference in `nnspec layers`
    # tensor inputs by name: "x" required, "mask?" optional (by keyword), "*xs" any number >= 1
    inputs: ClassVar[tuple[str, ...]] = ("x",)
    # runtime helper classes (nnspec/emit/prelude.py) the generated code needs
    prelude: ClassVar[tuple[str, ...]] = ()
    # accepted dtypes of the first input
    input_dtypes: ClassVar[tuple[str, ...]] = ("float",)
    # modules the generated code imports for this kind: a plugin's own (see layers/registry.py)
    imports: ClassVar[tuple[str, ...]] = ()

    # ---- rules ----------------------------------------------------------------------------
    def infer(self, ins: list[T]) -> T | tuple[T, ...]:
        """Output type(s) for these inputs; raise ShapeError when they do not fit."""
        return ins[0]

    def params(self, ins: list[T]) -> dict[str, Shape]:
        """Learnable parameters by their state_dict name (relative to the layer)."""
        return {}

    def buffers(self, ins: list[T]) -> dict[str, Shape]:
        """Persistent buffers (they appear in state_dict) by name."""
        return {}

    def flops(self, ins: list[T], outs: tuple[T, ...]) -> int:
        """Forward FLOPs per sample, counted as torch.utils.flop_counter does (matmuls, convs)."""
        return 0

    def flops_unseen_on_cpu(self, ins: list[T], outs: tuple[T, ...]) -> int:
        """The part of `flops` that flop_counter cannot see on the CPU, where a fused kernel it
        has no formula for does the work (oneDNN LSTM, CPU flash attention). nnspec counts those
        FLOPs all the same, with flop_counter's own formulas."""
        return 0

    def init_source(self, ins: list[T]) -> str:
        """Python source of the torch module constructor, e.g. `nn.Conv2d(3, 64, 3)`."""
        raise NotImplementedError(self.kind)

    def functional_source(self, args: list[str], ins: list[T]) -> str | None:
        """Source of a module-free call for an unnamed use, or None to always make a module."""
        return None

    def call_source(self, module: str, args: list[str], ins: list[T]) -> str:
        """Source that calls the constructed module on the inputs."""
        return f"{module}({', '.join(args)})"

    # ---- helpers for subclasses -------------------------------------------------------------
    @classmethod
    def arg_names(cls) -> list[str]:
        return [n for n in cls.model_fields]

    @classmethod
    def aliases(cls) -> dict[str, str]:
        out = {}
        for name, f in cls.model_fields.items():
            alias = f.validation_alias
            choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
            for c in choices:
                if c != name:
                    out[str(c)] = name
        return out

    def kwargs_source(self, names: list[str], **rename: str) -> str:
        """`a=1, b=(2, 2)` for the named fields, skipping ones equal to their defaults."""
        parts = []
        for n in names:
            value = getattr(self, n)
            field = type(self).model_fields[n]
            if not field.is_required() and value == field.default:
                continue
            parts.append(f"{rename.get(n, n)}={py(value)}")
        return ", ".join(parts)


# every kind by name; installed plugins load the first time it is read (layers/registry.py)
REGISTRY = Registry(Layer)


def register(cls: type[Layer]) -> type[Layer]:
    """Add a layer kind (a class decorator). This is `nnspec.register_layer`: a kind defined
    outside nnspec is checked and raises `PluginError` when its name exists or its `imports`
    are not modules of its own package."""
    return REGISTRY.add(cls)


def variant(base: type[Layer], kind: str, torch_name: str, doc: str, *, name: str = "",
            **rules: Any) -> type[Layer]:
    """Register a kind of a family that differs from the family's base only in class-level rules
    (`dims`, `ranks`, `functional`, ...): the base states the rules once, each kind is one call.

    Args:
        base: the family's base class, which declares every rule as a ClassVar.
        kind: the name a spec writes (`maxpool2d`).
        torch_name: the torch.nn class or prelude helper it builds (`nn.MaxPool2d`).
        doc: the one-line description `nnspec layers` and the layer reference show.
        name: the Python class name (default: the last part of `torch_name`).
        rules: the other ClassVars this kind sets.
    """
    cls_name = name or torch_name.split(".")[-1]
    values = {"kind": kind, "torch_name": torch_name, **rules}
    unknown = [k for k in rules if k not in base.__class_vars__]
    assert not unknown, f"{base.__name__} declares no class variable {unknown}"
    namespace = {"__doc__": doc, "__module__": base.__module__, "__qualname__": cls_name,
                 "__annotations__": {k: ClassVar[Any] for k in values}, **values}
    return register(type(cls_name, (base,), namespace))


def py(value: Any) -> str:
    """A spec value as Python source: only literals ever reach generated code."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        if math.isnan(value):
            return "float('nan')"
        return repr(float(value))
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, (tuple, list)):
        inner = ", ".join(py(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    raise TypeError(f"not a spec literal: {value!r}")


# ---- shared shape helpers -----------------------------------------------------------------
def expect_rank(t: T, rank: int | tuple[int, ...], what: str) -> None:
    ranks = (rank,) if isinstance(rank, int) else rank
    if len(t.shape) not in ranks:
        want = " or ".join(f"{r + 1}-d" for r in ranks)
        example = fmt_shape(tuple(["C", "H", "W", "D"][: ranks[0]]))  # type: ignore[arg-type]
        raise ShapeError(f"{what} expects a {want} input {example}, got {fmt_shape(t.shape)}")


def check_lengths(layer: Layer, dims: int, names: tuple[str, ...]) -> None:
    """Refuse a per-dim argument (kernel_size=(3, 3)) with a length other than `dims`; an
    argument the kind does not have is skipped."""
    for name in names:
        v = getattr(layer, name, None)
        if isinstance(v, tuple) and len(v) != dims:
            raise ShapeError(f"{layer.kind}: {name} has {len(v)} values, expected {dims}")


def ntuple(value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def norm_dim(dim: int, rank: int, what: str) -> int:
    """A torch dim (0 is the batch) -> index into the per-sample shape; refuses the batch."""
    full = rank + 1
    if not -full <= dim < full:
        raise ShapeError(f"{what}: dim {dim} is out of range for a {full}-d tensor")
    d = dim % full
    if d == 0:
        raise ShapeError(f"{what}: dim {dim} is the batch dimension",
                         "dims count the batch as dim 0; per-sample dims start at 1")
    return d - 1


def numel(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
