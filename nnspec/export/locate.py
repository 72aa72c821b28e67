"""Which layer of a spec an exporter failure came from: the layer kind and its spec line.

torch's ONNX exporter fails on one node of the traced graph; the node records the module path it
ran in (`nn_module_stack`) and the line of generated source (`stack_trace`). The module path
names a child in the IR (a Leaf: its kind and span); a functional op inside a block is found by
the spec line that the generated line points to.
"""
from __future__ import annotations

import re

from nnspec.ir import Leaf, ModuleDef, Seq

GENERATED = re.compile(r'File "<nnspec generated [0-9a-f]+>", line (\d+)')


def failed_nodes(err: BaseException) -> list:
    """The fx nodes the exporter was translating when it failed, innermost last (read from the
    frames of the exception chain; empty when it failed before translating any)."""
    import torch.fx

    found, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            node = tb.tb_frame.f_locals.get("node")
            if isinstance(node, torch.fx.Node):
                found.append(node)
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return found


def generated_lines(err: BaseException) -> list[int]:
    """Lines of generated source in the tracebacks of the exception chain (tracing failures)."""
    found, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith("<nnspec generated"):
                found.append(tb.tb_lineno)
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return found


def locate(root: ModuleDef, source: str, err: BaseException) -> tuple[str, str] | None:
    """(layer kind, `file:line:col`) of the layer the failure came from, or None if unknown."""
    nodes = failed_nodes(err)
    if nodes:
        node = nodes[-1]
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        path = stack[-1][0] if stack else ""
        lines = [int(n) for n in GENERATED.findall(node.meta.get("stack_trace") or "")]
    else:
        path, lines = "", generated_lines(err)
    child = find_child(root, path)
    if isinstance(child, Leaf):
        return child.kind, repr(child.span)
    if not lines:
        return None
    return _functional_at(root, source, lines[-1])


def find_child(root: ModuleDef, path: str):
    """The IR child at a module path of the built model ("layer1.0.conv1"), or None."""
    child = root
    for part in [p for p in path.split(".") if p]:
        if isinstance(child, ModuleDef):
            child = next((c for n, c in child.children if n == part), None)
        elif isinstance(child, Seq):
            child = next((c for i, c in enumerate(child.items) if child.item_name(i) == part),
                         None)
        else:
            return None
    return child


def _functional_at(root: ModuleDef, source: str, lineno: int) -> tuple[str, str] | None:
    """The layer of the spec line that generated line `lineno` points to (its trailing
    `file:line` comment), among every op of the IR."""
    lines = source.splitlines()
    if not 0 < lineno <= len(lines):
        return None
    pointer = re.search(r"\s(\S+):(\d+)\s*$", lines[lineno - 1])
    if pointer is None:
        return None
    name, line = pointer.group(1), int(pointer.group(2))
    ops = [op for op in _ops(root, set()) if op.layer is not None and op.span is not None
           and op.span.line == line and op.span.source.name == name]
    # a line calls a child (`self.fc(x)`) or computes a functional op (`torch.relu(x)`): a
    # failure outside any child's module is a functional op's, the one the line's code names
    ops = [op for op in ops if op.target is None] or ops
    code = lines[lineno - 1].split("#")[0]
    named = [op for op in ops if op.layer.kind in code] or ops
    return (named[0].layer.kind, repr(named[0].span)) if named else None


def _ops(module: ModuleDef, seen: set):
    if id(module) in seen:
        return
    seen.add(id(module))
    for op in module.ops:
        yield op
    for _, child in module.children:
        for inner in _modules_in(child):
            yield from _ops(inner, seen)


def _modules_in(child):
    if isinstance(child, ModuleDef):
        yield child
    elif isinstance(child, Seq):
        for item in child.items:
            yield from _modules_in(item)
