"""Emit the per-layer summary: name, kind, output shape, parameters and FLOPs, then totals."""
from __future__ import annotations

from nnspec.ir import Leaf, ModuleDef, Seq, child_ins, count_params, iter_params
from nnspec.layers.base import fmt_shape, numel
from nnspec.ir.lower import Lowered
from nnspec.emit.text import comment_text


def summarize(low: Lowered) -> dict:
    """The summary as plain data (what `summary --json` prints and summary.json holds)."""
    rows: list[dict] = []
    flops = _module_rows(low.root, "", 0, rows)
    params = count_params(low.root)
    return {
        "model": low.root.signature,
        "inputs": {n: {"shape": list(v.type.shape), "dtype": v.type.dtype}
                   for n, v in zip(low.root.input_names, low.root.inputs)},
        "outputs": [{"shape": list(v.type.shape), "dtype": v.type.dtype} for v in low.root.outputs],
        "params": params,
        "trainable_params": params,
        "buffers": sum(numel(s) for s in _buffers(low.root)),
        "flops": flops,
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


def _module_rows(module: ModuleDef, prefix: str, depth: int, rows: list) -> int:
    total = 0
    called: set[int] = set()  # children already called once: a second call shares weights
    for op in module.ops:
        outs = [fmt_shape(v.type.shape) for v in op.outs]
        target = op.target
        if target is None:
            ins = [v.type for v in op.args] + [v.type for v in op.kwargs.values()]
            f = op.layer.flops(ins, tuple(v.type for v in op.outs))
            rows.append(_row(prefix + "(" + op.layer.kind + ")", op.layer.kind, outs, 0, f, depth))
            total += f
            continue
        name = prefix + module.child_name(target)
        shared = id(target) in called or op.reuse  # op.reuse: e.g. `a.fc`, first called in `a`
        called.add(id(target))
        p = 0 if shared else _own_params(target)
        if isinstance(target, Leaf):
            ins = [v.type for v in op.args] + [v.type for v in op.kwargs.values()]
            f = target.layer.flops(ins, tuple(v.type for v in op.outs))
            rows.append(_row(name, target.kind, outs, p, f, depth, shared))
            total += f
            continue
        at = len(rows)
        rows.append(None)  # filled in once its children are counted
        if isinstance(target, Seq):
            f = _seq_rows(target, name + ".", depth + 1, rows)
            kind = "sequential"
        else:
            f = _module_rows(target, name + ".", depth + 1, rows)
            kind = target.name
        rows[at] = _row(name, kind, outs, p, f, depth, shared)
        total += f
    return total


def _seq_rows(seq: Seq, prefix: str, depth: int, rows: list) -> int:
    from nnspec.layers.base import T
    total = 0
    cur = seq.ins
    for i, (item, extra) in enumerate(zip(seq.items, seq.extras)):
        name = f"{prefix}{seq.item_name(i)}"
        if isinstance(item, Leaf):
            outs = item.layer.infer(item.ins)
            outs = outs if isinstance(outs, tuple) else (outs,)
            f = item.layer.flops(item.ins, outs)
            rows.append(_row(name, item.kind, [fmt_shape(o.shape) for o in outs],
                             _own_params(item), f, depth))
        elif isinstance(item, Seq):
            at = len(rows)
            rows.append(None)
            f = _seq_rows(item, name + ".", depth + 1, rows)
            outs = (_last_type(item),)
            rows[at] = _row(name, "sequential", [fmt_shape(outs[0].shape)], _own_params(item), f, depth)
        else:
            at = len(rows)
            rows.append(None)
            f = _module_rows(item, name + ".", depth + 1, rows)
            outs = tuple(v.type for v in item.outputs)
            rows[at] = _row(name, item.name, [fmt_shape(o.shape) for o in outs], _own_params(item),
                            f, depth)
        total += f
    return total


def _last_type(seq: Seq):
    item = seq.items[-1]
    if isinstance(item, Leaf):
        out = item.layer.infer(item.ins)
        return out[0] if isinstance(out, tuple) else out
    if isinstance(item, Seq):
        return _last_type(item)
    return item.outputs[0].type


def _row(name, kind, outs, params, flops, depth, shared=False) -> dict:
    return {"name": name, "kind": kind, "output_shape": outs[0] if len(outs) == 1 else outs,
            "params": params, "flops": flops, "depth": depth, "shared": shared}


def render_table(summary: dict) -> str:
    """A torchinfo-like text table of a summary."""
    header = ("Layer", "Kind", "Output shape", "Params", "FLOPs")
    rows = [("  " * r["depth"] + r["name"] + (" (shared)" if r["shared"] else ""), r["kind"],
             r["output_shape"] if isinstance(r["output_shape"], str) else ", ".join(r["output_shape"]),
             f"{r['params']:,}" if r["params"] else "-", _si(r["flops"]) if r["flops"] else "-")
            for r in summary["layers"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "=" * (sum(widths) + 2 * (len(widths) - 1))

    def fmt(r):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    # the signature holds spec strings: one line, no terminal control characters
    out = [comment_text(summary["model"]), line, fmt(header), line, *map(fmt, rows), line,
           f"Total params: {summary['params']:,}",
           f"Trainable params: {summary['trainable_params']:,}",
           f"Forward FLOPs per sample: {summary['flops']:,} ({_si(summary['flops'])})",
           f"Parameter memory (fp32): {_bytes(4 * summary['params'])}"]
    return "\n".join(out) + "\n"


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
