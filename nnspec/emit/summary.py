"""Emit the per-layer summary: name, kind, input and output shapes, parameters and FLOPs, then
totals (parameters, FLOPs, activation memory)."""
from __future__ import annotations

import json
import re

from nnspec.ir import Leaf, ModuleDef, Seq, child_ins, count_params, iter_params
from nnspec.layers.base import T, numel
from nnspec.ir.lower import Lowered
from nnspec.emit.text import comment_text

# bytes per element of a tensor of each dtype, as torch stores them by default (float32, int64)
DTYPE_BYTES = {"float": 4, "long": 8, "bool": 1}


def summarize(low: Lowered, depth: int | None = None) -> dict:
    """The summary as plain data (what `summary --json` prints and summary.json holds).

    Shapes are lists whose first item is "B", the batch dimension (`["B", 64, 56, 56]`); a row
    with several tensors has a list of such lists. `activation_bytes` is per sample: every layer
    call's outputs, counted once each. `depth` keeps only the rows nested at most that deep."""
    walk = _Walk()
    flops = walk.module(low.root, "", 0)
    params = count_params(low.root)
    rows = walk.rows if depth is None else [r for r in walk.rows if r["depth"] <= depth]
    return {
        "model": low.root.signature,
        "inputs": {n: {"shape": list(v.type.shape), "dtype": v.type.dtype}
                   for n, v in zip(low.root.input_names, low.root.inputs)},
        "outputs": [{"shape": list(v.type.shape), "dtype": v.type.dtype} for v in low.root.outputs],
        "params": params,
        "trainable_params": params,
        "buffers": sum(numel(s) for s in _buffers(low.root)),
        "flops": flops,
        "activation_bytes": walk.activation_bytes,
        "layers": rows,
    }


def _buffers(child):
    if isinstance(child, Leaf):
        yield from child.layer.buffers(child.ins).values()
    elif isinstance(child, Seq):
        for c in child.items:
            yield from _buffers(c)
    else:
        for _, c in child.children:
            yield from _buffers(c)


def _own_params(child) -> int:
    return sum(numel(s) for _, s in iter_params(child))


def tensor_bytes(t: T) -> int:
    """Bytes of one sample of a tensor of this type."""
    return numel(t.shape) * DTYPE_BYTES[t.dtype]


class _Walk:
    """Walks the IR in call order, one row per call; a block's row precedes its children's."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        # the outputs of every layer call: what torchinfo counts with hooks on leaf modules
        # (functional ops such as `x + y` are no modules, so neither counts them)
        self.activation_bytes = 0

    def leaf(self, leaf: Leaf, name, ins, outs, params, flops, depth, shared=False) -> None:
        if not getattr(leaf.layer, "bare_parameter", False):  # an nn.Parameter's expand: a view
            self.activation_bytes += sum(tensor_bytes(t) for t in outs)
        self.rows.append(_row(name, leaf.kind, ins, outs, params, flops, depth, shared))

    def module(self, module: ModuleDef, prefix: str, depth: int) -> int:
        total = 0
        called: set[int] = set()  # children already called once: a second call shares weights
        for op in module.ops:
            ins = [v.type for v in op.args] + [v.type for v in op.kwargs.values()]
            outs = [v.type for v in op.outs]
            target = op.target
            if target is None:
                f = op.layer.flops(ins, tuple(outs))
                self.rows.append(_row(prefix + "(" + op.layer.kind + ")", op.layer.kind, ins,
                                      outs, 0, f, depth))
                total += f
                continue
            name = prefix + module.child_name(target)
            shared = id(target) in called or op.reuse  # op.reuse: e.g. `a.fc`, first called in `a`
            called.add(id(target))
            p = 0 if shared else _own_params(target)
            if isinstance(target, Leaf):
                f = target.layer.flops(ins, tuple(outs))
                self.leaf(target, name, ins, outs, p, f, depth, shared)
                total += f
                continue
            at = len(self.rows)
            self.rows.append({})  # filled in once its children are counted
            if isinstance(target, Seq):
                f = self.seq(target, name + ".", depth + 1)
                kind = "sequential"
            else:
                f = self.module(target, name + ".", depth + 1)
                kind = target.name
            self.rows[at] = _row(name, kind, ins, outs, p, f, depth, shared)
            total += f
        return total

    def seq(self, seq: Seq, prefix: str, depth: int) -> int:
        total = 0
        for i, item in enumerate(seq.items):
            name = f"{prefix}{seq.item_name(i)}"
            ins = child_ins(item)
            if isinstance(item, Leaf):
                outs = _leaf_outs(item)
                f = item.layer.flops(item.ins, tuple(outs))
                self.leaf(item, name, ins, outs, _own_params(item), f, depth)
                total += f
                continue
            at = len(self.rows)
            self.rows.append({})
            if isinstance(item, Seq):
                f = self.seq(item, name + ".", depth + 1)
                kind, outs = "sequential", [_last_type(item)]
            else:
                f = self.module(item, name + ".", depth + 1)
                kind, outs = item.name, [v.type for v in item.outputs]
            self.rows[at] = _row(name, kind, ins, outs, _own_params(item), f, depth)
            total += f
        return total


def _leaf_outs(leaf: Leaf) -> list[T]:
    out = leaf.layer.infer(leaf.ins)
    return list(out) if isinstance(out, tuple) else [out]


def _last_type(seq: Seq) -> T:
    item = seq.items[-1]
    if isinstance(item, Leaf):
        return _leaf_outs(item)[0]
    if isinstance(item, Seq):
        return _last_type(item)
    return item.outputs[0].type


def shape_list(types: list[T]) -> list:
    """One tensor: its shape as ["B", *dims]; several: a list of those; none: []."""
    shapes = [["B", *t.shape] for t in types]
    return shapes[0] if len(shapes) == 1 else shapes


def shape_text(shape: list) -> str:
    """A summary shape as the table prints it: `[B, 64, 56, 56]`, several joined by `, `."""
    if shape and isinstance(shape[0], list):
        return ", ".join(map(shape_text, shape))
    return "[" + ", ".join(map(str, shape)) + "]"


def _row(name, kind, ins, outs, params, flops, depth, shared=False) -> dict:
    return {"name": name, "kind": kind, "input_shape": shape_list(ins),
            "output_shape": shape_list(outs), "params": params, "flops": flops, "depth": depth,
            "shared": shared}


# a list that holds no list or object: JSON strings never hold a raw newline, so every match
# spans structure, not text
_FLAT_LIST = re.compile(r"\[\n\s*([^\[\]{}]*?)\n\s*\]")


def dumps(summary: dict) -> str:
    """The summary as JSON (summary.json, `summary --json`): indented, sorted keys, and each list
    of numbers or strings on one line, so a shape reads as `["B", 64, 56, 56]`."""
    text = json.dumps(summary, indent=2, sort_keys=True)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)


def render_table(summary: dict, batch_size: int = 1) -> str:
    """A torchinfo-like text table of a summary; the memory lines are for `batch_size` samples."""
    header = ("Layer", "Kind", "Input shape", "Output shape", "Params", "FLOPs")
    rows = [("  " * r["depth"] + r["name"] + (" (shared)" if r["shared"] else ""), r["kind"],
             _cell(r["input_shape"]) if r["input_shape"] else "-", _cell(r["output_shape"]),
             f"{r['params']:,}" if r["params"] else "-", _si(r["flops"]) if r["flops"] else "-")
            for r in summary["layers"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "=" * (sum(widths) + 2 * (len(widths) - 1))

    def fmt(r):
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    inputs = sum(tensor_bytes(T(tuple(i["shape"]), i["dtype"])) for i in summary["inputs"].values())
    batch = f" (batch {batch_size})"
    # the signature holds spec strings: one line, no terminal control characters
    out = [comment_text(summary["model"]), line, fmt(header), line, *map(fmt, rows), line,
           f"Total params: {summary['params']:,}",
           f"Trainable params: {summary['trainable_params']:,}",
           f"Forward FLOPs per sample: {summary['flops']:,} ({_si(summary['flops'])})",
           f"Parameter memory (fp32): {_bytes(4 * summary['params'])}",
           f"Input size{batch}: {_mb(inputs * batch_size)}",
           f"Forward/backward pass size{batch}: {_mb(summary['activation_bytes'] * batch_size)}"]
    return "\n".join(out) + "\n"


def _cell(shape: list) -> str:
    """A shape in the table; several equal ones (the two sides of an add) as `[B, 8] x2`."""
    if shape and isinstance(shape[0], list) and all(s == shape[0] for s in shape):
        return f"{shape_text(shape[0])} x{len(shape)}"
    return shape_text(shape)


def _mb(n: int) -> str:
    """Decimal units, as torchinfo prints its sizes (MB = 10^6 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n} B"


def _si(n: int) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
