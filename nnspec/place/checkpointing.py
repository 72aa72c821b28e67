"""Activation checkpointing: which modules `parallel.activation_checkpointing` names.

A pattern names a module by its state_dict path (`layer1.0`, `transformer.h.*`, fnmatch style) or
a block by its name (`BasicBlock`); the outermost matches are checkpointed (their activations are
recomputed in the backward pass instead of kept). A pattern that matches nothing is an error at
compile time, since it would silently checkpoint nothing.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from nnspec.ir import Child, Leaf, ModuleDef, Seq


def submodules(root: ModuleDef):
    """(path, kind, child) of every module under the root, parents before their children."""
    def walk(child: Child, path: str):
        if isinstance(child, Leaf):
            yield path, child.kind, child
            return
        if path:
            yield path, child.name if isinstance(child, ModuleDef) else "sequential", child
        if isinstance(child, Seq):
            for i, item in enumerate(child.items):
                yield from walk(item, f"{path}.{child.item_name(i)}" if path else child.item_name(i))
        else:
            for name, c in child.children:
                yield from walk(c, f"{path}.{name}" if path else name)
    yield from walk(root, "")


def matches(pattern: str, path: str, kind: str) -> bool:
    return fnmatchcase(path, pattern) or pattern == kind


def checkpointed(root: ModuleDef, patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(outermost module paths the patterns match, patterns that match nothing)."""
    chosen: list[str] = []
    used: set[str] = set()
    for path, kind, _ in submodules(root):
        hit = [p for p in patterns if matches(p, path, kind)]
        used.update(hit)
        if hit and not any(path.startswith(c + ".") for c in chosen):
            chosen.append(path)
    return chosen, [p for p in patterns if p not in used]


def apply(model, paths: list[str]) -> None:
    """Recompute the forward pass of each named submodule in the backward pass (PyTorch's
    non-reentrant checkpoint; state_dict names are unchanged)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    for path in paths:
        module = model.get_submodule(path)
        forward = module.forward

        def wrapped(*args, _forward=forward, _module=module, **kwargs):
            if _module.training and torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        module.forward = wrapped
