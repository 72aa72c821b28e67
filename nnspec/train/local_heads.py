"""Attention that computes with its rank's heads, for tensor parallelism.

Once a q/k/v projection is column-parallel, a rank's projection puts out its slice of every
section (its heads of q, then of k, then of v), so the block's forward must split that output by
the local widths and unflatten q, k and v into the local heads. The generated forward writes both
numbers into its code (`torch.split(q, self.n_embd, dim=2)`, `q.unflatten(-1, (self.n_head,
-1))` inside `F.scaled_dot_product_attention(...)`, as nnspec/layers/attention.py and shape.py
emit them), as a module attribute or as a literal. So each attention class gets a subclass whose
forward is the generated one with those expressions divided by N (`self.n_head // 2`), compiled
from the generated source's syntax tree, and the attention instances are switched to it. Only
these expressions change: the attributes keep their values for anything else that reads them,
and the parameters and their names are the module's own.
"""
from __future__ import annotations

import ast
import copy

import torch

from nnspec.train.errors import TrainError

SDPA = "scaled_dot_product_attention"


def localize(model: torch.nn.Module, source: str, heads: dict[str, int],
             sections: dict[str, tuple[int, ...]], n: int) -> None:
    """Switch each attention module of `heads` (path -> heads per rank, from the TensorPlan) to a
    forward that computes with 1/n of its heads; `sections` (fused projection path -> section
    widths) says which splits cut a column-parallel q/k/v projection.

    Raises:
        TrainError: an attention whose forward is not in the generated source, or whose heads or
            fused q/k/v split cannot be found there.
    """
    from nnspec.emit.module import load_module

    namespace = load_module(source).__dict__
    tree = ast.parse(source)
    local: dict[type, type] = {}
    for path in sorted(heads):
        module = model.get_submodule(path)
        base = type(module)
        if base not in local:
            prefix = f"{path}." if path else ""
            fused = {p[len(prefix):] for p in sections
                     if p.startswith(prefix) and "." not in p[len(prefix):]}
            local[base] = _local_class(tree, base.__name__, namespace, fused, n, path)
        module.__class__ = local[base]


def _local_class(tree: ast.Module, name: str, namespace: dict, fused: set[str], n: int,
                 path: str) -> type:
    """A subclass of generated class `name` whose forward attends with 1/n of the heads."""
    forward = _forward(tree, name)
    if forward is None:
        raise TrainError(f"{path}: its attention ({name}) is not a class of the generated "
                         "model.py, so its heads cannot be split",
                         "write the attention with linear projections and sdpa in a block (as "
                         "specs/blocks/gpt.nn does), or leave tensor = 1")
    rewrite = _Divide(n, fused)
    forward = rewrite.visit(copy.deepcopy(forward))
    if not rewrite.attentions:
        raise TrainError(f"{path}: no sdpa call with heads found in the forward of {name}",
                         "leave tensor = 1 for this model")
    if fused and rewrite.splits < len(fused):
        raise TrainError(f"{path}: the fused q/k/v projection of {name} is not cut by a split in "
                         "the same forward, so its local sections cannot be found",
                         "leave tensor = 1 for this model")
    template = ast.parse(f"class {name}TensorParallel({name}):\n    pass\n")
    template.body[0].body = [forward]
    ast.fix_missing_locations(template)
    scope = dict(namespace)
    exec(compile(template, f"<nnspec tensor-parallel {name}>", "exec"), scope)  # noqa: S102
    return scope[f"{name}TensorParallel"]


class _Divide(ast.NodeTransformer):
    """Divides by n the head counts unflattened inside sdpa calls, and the sizes of the splits
    that cut the output of a fused (sectioned) projection."""

    def __init__(self, n: int, fused: set[str]):
        self.n, self.fused = n, fused
        self.outputs: dict[str, str] = {}   # local name -> the child module it came from
        self.attentions = self.splits = 0

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        child = _child_call(node.value)
        if child is not None and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.outputs[node.targets[0].id] = child
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == SDPA:
            for arg in node.args[:3]:
                for inner in ast.walk(arg):
                    if _is_heads_unflatten(inner):
                        inner.args[1].elts[0] = self._divided(inner.args[1].elts[0])
                        self.attentions += 1
        elif isinstance(func, ast.Attribute) and func.attr == "split" and len(node.args) >= 2 \
                and isinstance(node.args[0], ast.Name) \
                and self.outputs.get(node.args[0].id) in self.fused:
            size = node.args[1]
            if isinstance(size, (ast.List, ast.Tuple)):
                size.elts = [self._divided(e) for e in size.elts]
            else:
                node.args[1] = self._divided(size)
            self.splits += 1
        return self.generic_visit(node)

    def _divided(self, expr: ast.expr) -> ast.expr:
        return ast.BinOp(left=expr, op=ast.FloorDiv(), right=ast.Constant(self.n))


def _is_heads_unflatten(node: ast.AST) -> bool:
    """`x.unflatten(-1, (H, -1))`: how sdpa's emitter splits a width into H heads."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "unflatten" and len(node.args) == 2
            and isinstance(node.args[1], ast.Tuple) and len(node.args[1].elts) == 2)


def _child_call(node: ast.AST) -> str | None:
    """The child's name in `self.child(...)`, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
        return node.func.attr
    return None


def _forward(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward":
                    return item
    return None
