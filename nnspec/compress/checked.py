"""The compress section as checked data: the model's layers a directive can select, the checked
directives (Prune, Quantize, Distill and the Plan of them), and where in the section each argument
was written.

directives.read_directives produces these and the passes (prune, quantize, heads, distill) read
them; attention.check_heads builds a Prune too. They live apart from the check so that the check
can call attention's and attention can build the same data without each importing the other.
Torch-free.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from nnspec.lang import syntax as S
from nnspec.lang.config import CompressSpec
from nnspec.lang.diagnostics import Span
from nnspec.ir import Leaf, ModuleDef, Seq

# ---- the model's layers ------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """A named leaf module of the model: its dotted name (as in state_dict), kind and params."""

    name: str
    kind: str
    params: dict[str, tuple]
    tied: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)  # the layer's call


def model_layers(ir: ModuleDef) -> list[LayerInfo]:
    """Every leaf module, in definition order, with the dotted names nn.Module gives them."""
    tied: set[str] = set()
    out: list[LayerInfo] = []

    def walk(child, prefix: str, ties_of: ModuleDef | None) -> None:
        if isinstance(child, Leaf):
            out.append(LayerInfo(prefix, child.kind, dict(child.layer.params(child.ins)),
                                 span=child.span))
        elif isinstance(child, Seq):
            for i, item in enumerate(child.items):
                walk(item, f"{prefix}.{child.item_name(i)}" if prefix else child.item_name(i), None)
        else:
            for leaf, _param, src, _span in child.ties:
                own = child.child_name(leaf)   # the root's ties may reach into blocks
                tied.add(f"{prefix}.{own}" if prefix else own)
                tied.add(".".join(([prefix] if prefix else []) + list(src[:-1])))
            for name, c in child.children:
                if name is not None:
                    walk(c, f"{prefix}.{name}" if prefix else name, child)

    walk(ir, "", None)
    seen, unique = set(), []
    for layer in out:  # a shared layer appears once per use
        if layer.name not in seen:
            seen.add(layer.name)
            unique.append(LayerInfo(layer.name, layer.kind, layer.params, layer.name in tied,
                                    layer.span))
    return unique


# ---- directives --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Which layers a directive applies to: kinds or name patterns, minus the skipped ones."""

    on: tuple[str, ...]
    skip: tuple[str, ...] = ()

    def select(self, layers: list[LayerInfo], kinds: tuple[str, ...]) -> list[LayerInfo]:
        chosen = [layer for layer in layers if layer.kind in kinds
                  and any(matches_pattern(p, layer) for p in self.on)]
        return [layer for layer in chosen if not any(matches_pattern(p, layer) for p in self.skip)]


def matches_pattern(pattern: str, layer: LayerInfo) -> bool:
    return pattern == layer.kind or fnmatch.fnmatchcase(layer.name, pattern)


@dataclass(frozen=True)
class Prune:
    method: str                 # magnitude, random, channels (= filters), heads, nm
    amount: float               # fraction removed (nm: 1 - n/m)
    target: Target
    scope: str = "layer"        # magnitude/random: per layer or one threshold over all
    schedule: tuple = ("oneshot",)   # or ("cubic", start_step, end_step, every)
    norm: float = 2.0           # channels, heads: the Ln norm that ranks them
    n: int = 2
    m: int = 4
    layers: tuple[str, ...] = ()     # the layers it selects (filled in by the check)


@dataclass(frozen=True)
class Quantize:
    method: str                 # dynamic, static, qat, weight_only, cast
    dtype: str                  # int8, int4, fp16, bf16
    target: Target
    calibrate: int = 8          # static: training batches run through the observers
    group_size: int = 32        # weight_only int4: weights per scale
    backend: str = "x86"
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Distill:
    teacher: Path               # the teacher's .nn file (relative to the spec)
    weights: Path               # its weights (trained there and saved when missing)
    temperature: float = 4.0
    alpha: float = 0.9          # weight of the soft-target loss
    features: tuple[tuple[str, str], ...] = ()   # (student layer, teacher layer)
    feature_weight: float = 1.0
    seeds: int = 1
    epochs: int | None = None   # default: the train section's epochs
    mixup: float = 0.0          # > 0: also distill on mixup pairs, Beta(mixup, mixup)
    labels: float = 1.0         # the fraction of the training labels the students see
    transfer: str = "labelled"  # unlabelled: the teacher also labels the rest of the inputs


@dataclass(frozen=True)
class Plan:
    """The compress section, checked: what runs, in which order."""

    prune: tuple[Prune, ...] = ()
    quantize: tuple[Quantize, ...] = ()
    distill: Distill | None = None
    settings: CompressSpec = field(default_factory=CompressSpec)

    @property
    def empty(self) -> bool:
        return not (self.prune or self.quantize or self.distill)

    @property
    def order(self) -> tuple[str, ...]:
        return self.settings.order


# ---- where an argument was written -------------------------------------------------------------

class Located:
    """Finds the span of a setting's n-th call and of its arguments, for precise carets."""

    def __init__(self, section: S.Section | None, fallback: Span | None):
        self.section, self.fallback = section, fallback

    def call(self, key: str, index: int) -> S.Node | None:
        if self.section is None:
            return None
        for s in self.section.settings:
            if s.key == key:
                node = s.value
                if isinstance(node, S.ListExpr):
                    return node.items[index] if index < len(node.items) else node
                return node
        return None

    def span(self, key: str, index: int, arg: str | None = None, pos: int | None = None,
             item: str | None = None) -> Span | None:
        node = self.call(key, index)
        if node is None:
            return self.fallback
        if isinstance(node, S.Call) and (arg is not None or pos is not None):
            positional = [a for a in node.args if a.name is None]
            found = next((a for a in node.args if a.name == arg), None)
            if found is None and pos is not None and pos < len(positional):
                found = positional[pos]
            if found is not None:
                value = found.value
                if item is not None and isinstance(value, S.ListExpr):
                    for i in value.items:
                        if (isinstance(i, S.Name) and i.id == item) or \
                                (isinstance(i, S.Literal) and i.value == item):
                            return i.span
                return found.span
        return node.span
