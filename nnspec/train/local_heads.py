"""Attention that computes with its rank's heads: the head count and the q/k/v split width of a
generated block, made local for tensor parallelism.

Once the q/k/v projection is column-parallel, a rank's projection puts out its slice of every
section (its heads of q, then of k, then of v), so the block's forward must split by the local
width and unflatten into the local heads. The generated forward reads both from the module's
attributes (`torch.split(q, self.n_embd, dim=2)`, `q.unflatten(-1, (self.n_head, -1))`, emitted
by nnspec/layers/attention.py and shape.py), so setting those attributes on the instance is
enough. Which attributes they are is read from the forward's syntax tree in the generated source;
an attribute that the forward also reads anywhere else is not changed (that other use would see
the local value too), and a head count written into the code as a number cannot be changed:
both are refused with the reason.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import torch

from nnspec.train.errors import TrainError


@dataclass(frozen=True)
class LocalAttention:
    """The attributes of one generated attention class that hold its widths."""

    heads: tuple[str, ...]     # read as `x.unflatten(-1, (self.NAME, -1))`
    splits: tuple[str, ...]    # read as `torch.split(x, self.NAME, dim=...)`


def localize(model: torch.nn.Module, source: str, heads: dict[str, int], n: int) -> None:
    """Set each attention module of `heads` (path -> heads per rank) to compute with its local
    heads: head-count attributes to the local count, q/k/v split widths divided by `n`.

    Raises:
        TrainError: a forward whose widths are not attributes only it reads in those places.
    """
    classes: dict[str, LocalAttention] = {}
    tree = ast.parse(source)
    for path, local in sorted(heads.items()):
        module = model.get_submodule(path)
        name = type(module).__name__
        if name not in classes:
            classes[name] = _local_attention(tree, name, path)
        found = classes[name]
        for attr in found.heads:
            setattr(module, attr, local)
        for attr in found.splits:
            width = getattr(module, attr)
            if width % n:
                raise TrainError(f"{path}: its q/k/v width {width} does not divide by "
                                 f"tensor = {n}", "choose a tensor degree that divides it")
            setattr(module, attr, width // n)


def _local_attention(tree: ast.Module, name: str, path: str) -> LocalAttention:
    forward = _forward(tree, name)
    if forward is None:
        raise TrainError(f"{path}: no forward of class {name} in the generated model.py",
                         "report this: the emitted source does not match its modules")
    heads, splits, literal = set(), set(), False
    roles: dict[int, str] = {}   # id of a `self.X` node -> the role it plays
    for node in ast.walk(forward):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr == "unflatten" and len(node.args) == 2 \
                and isinstance(node.args[1], ast.Tuple) and node.args[1].elts:
            first = node.args[1].elts[0]
            attr = _self_attr(first)
            if attr is None:
                literal = literal or isinstance(first, ast.Constant)
                continue
            heads.add(attr)
            roles[id(first)] = "heads"
        elif node.func.attr == "split" and len(node.args) >= 2:
            attr = _self_attr(node.args[1])
            if attr is None:  # a fixed width would cut the local q/k/v in the wrong places
                literal = True
                continue
            splits.add(attr)
            roles[id(node.args[1])] = "split"
    if literal or not heads:
        raise TrainError(f"{path}: the head count or the q/k/v split of its attention is "
                         "written into model.py as a number, so a rank cannot compute with its "
                         "share of the heads",
                         "give the block a heads parameter (as specs/blocks/gpt.nn does), or "
                         "leave tensor = 1")
    others = {_self_attr(node) for node in ast.walk(forward)
              if _self_attr(node) in heads | splits and id(node) not in roles}
    if others:
        raise TrainError(f"{path}: class {name} reads {', '.join(sorted(others))} outside the "
                         "attention's head split, so it cannot be changed to the local width",
                         "leave tensor = 1 for this model")
    return LocalAttention(tuple(sorted(heads)), tuple(sorted(splits)))


def _forward(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward":
                    return item
    return None


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == "self" and isinstance(node.ctx, ast.Load):
        return node.attr
    return None
