"""Differential check of one spec: the module nnspec builds against the reference interpreter of
its IR (nnspec.interp), on the same seeded weights and inputs, in float64.

`check_spec(spec)` asserts that
(a, b, c) every output of the built module equals the interpreter's within `rtol` (relative to the
          output's largest magnitude; long and bool outputs exactly);
(d)       the summary's parameter count equals the built module's unique parameters (a tied or
          shared weight counts once);
(e)       every output shape in the summary equals the shape a forward hook saw on that module;
(f)       the summary's FLOPs equal torch.utils.flop_counter's count of a float32 forward, less the
          part each layer declares unseen on the CPU (Layer.flops_unseen_on_cpu).
A failure raises AssertionError naming the spec line and the layer.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import nnspec
from nnspec import interp
from nnspec.compile import Spec
from nnspec.emit.summary import shape_text
from nnspec.ir import Leaf, ModuleDef, Seq
from nnspec.layers.base import fmt_shape

from .inputs import BATCH, draw_inputs


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Tensors created without a dtype (torch.arange(...) / 2, long / long) follow the run's."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def check_spec(spec: Spec | str | Path, seed: int = 0, rtol: float = 1e-10) -> dict:
    """Check a spec (or the path of one) both ways; returns what it compared (for reports)."""
    if not isinstance(spec, Spec):
        spec = nnspec.load(spec)
    with default_dtype(torch.float64):
        model = spec.build().to(torch.float64).eval()
        state = model.state_dict()
        gen = torch.Generator().manual_seed(seed)
        fill_state(state, gen)
        inputs = draw_inputs(spec.ir, gen)
        built, calls = run_built(spec, model, inputs)
        traced: list = []
        try:
            got = interp.run(spec.ir, state, [x.clone() for x in inputs],
                             trace=lambda path, child, outs: traced.append((path, child, outs)))
        except interp.InterpError as err:
            raise AssertionError(f"interpreter: {err}") from err
        errors = compare_outputs(spec, built, got, calls, traced, rtol)
        check_output_types(spec, built)
    summary = spec.summary()
    check_params(spec, model, summary)
    check_shapes(spec, model, summary, calls)
    counted = check_flops(spec, model, inputs, summary)
    return {"outputs": errors, "params": summary["params"], "flops": counted}


def fill_state(state: dict, gen: torch.Generator) -> None:
    """Seeded values that keep every constraint: positive running variances, scales near 1,
    weights scaled by their fan-in so deep nets stay in range."""
    for name, t in state.items():
        if not t.is_floating_point():
            continue  # num_batches_tracked
        u = torch.rand(t.shape, generator=gen, dtype=t.dtype)
        if t.dim() == 1 and name.rsplit(".", 1)[-1] in ("running_var", "weight"):
            t.copy_(0.5 + u)
        elif t.dim() <= 1:
            t.copy_(u - 0.5)
        else:
            fan_in = t[0].numel()
            t.copy_((2 * u - 1) * (3.0 / fan_in) ** 0.5)


def run_built(spec, model: nn.Module, inputs: list) -> tuple[list, dict[str, list]]:
    """The built module's outputs, and every submodule's output per call, by module path. A
    failure is reported at the innermost module that was running."""
    calls: dict[str, list] = {}
    running: list[str] = []
    handles = []

    def done(m, a, out, path):
        running.pop()
        calls.setdefault(path, []).append(out)

    for path, module in model.named_modules():
        if path:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, path=path: running.append(path)))
            handles.append(module.register_forward_hook(
                lambda m, a, out, path=path: done(m, a, out, path)))
    try:
        with torch.no_grad():
            out = model(*[x.clone() for x in inputs])
    except Exception as err:
        path = running[-1] if running else ""
        where = _spans(spec.ir).get(path, _where(spec.ir.span))
        raise AssertionError(f"{where}: the built module fails in `{path or spec.ir.name}`: "
                             f"{type(err).__name__}: {err}") from err
    finally:
        for h in handles:
            h.remove()
    return (list(out) if isinstance(out, tuple) else [out]), calls


def _as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over max(max |b|, 1); NaN in both at the same places counts as equal; exact
    for integer and bool tensors (0 or inf)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return float("inf")
    if not a.is_floating_point():
        return 0.0 if torch.equal(a, b) else float("inf")
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if not torch.equal(nan_a, nan_b):
        return float("inf")
    a, b = a[~nan_a], b[~nan_b]
    if a.numel() == 0:
        return 0.0
    if not torch.equal(torch.isinf(a), torch.isinf(b)) or not torch.equal(a[torch.isinf(a)],
                                                                          b[torch.isinf(b)]):
        return float("inf")
    finite = ~torch.isinf(a)
    a, b = a[finite], b[finite]
    if a.numel() == 0:
        return 0.0
    # relative to the output's magnitude, but never below 1: weights and inputs are O(1), and an
    # output that is zero up to rounding (a sum after a normalization, h - h) differs in its
    # rounding noise only; relative to itself that noise would read as a 100% error
    scale = max(b.abs().max().item(), 1.0)
    return (a - b).abs().max().item() / scale


def _where(span) -> str:
    return f"{span.source.name}:{span.line}"


def _describe(t) -> str:
    return f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def compare_outputs(spec, built: list, got: list, calls: dict, traced: list, rtol: float):
    if len(built) != len(got):
        raise AssertionError(f"{_where(spec.ir.span)}: model {spec.ir.name}: the built module "
                             f"gives {len(built)} outputs, the interpreter {len(got)}")
    errors = []
    for i, (b, g) in enumerate(zip(built, got)):
        err = relative_error(g, b)
        errors.append(err)
        if not err <= rtol:
            where = locate(calls, traced, rtol)
            raise AssertionError(
                f"{where}output {i} of {spec.ir.name}: built module and interpreter differ "
                f"(relative error {err:.3g} > {rtol:g}; built {_describe(b)}, interpreter "
                f"{_describe(g)})")
    return errors


def locate(calls: dict, traced: list, rtol: float) -> str:
    """The first child (in execution order) whose built output differs from the interpreter's,
    as 'file:line: kind `path`: ...'; empty when every child agrees (a functional op differs)."""
    seen: dict[str, int] = {}
    for path, child, outs in traced:
        n = seen.get(path, 0)
        seen[path] = n + 1
        records = calls.get(path)
        if not records or n >= len(records):
            continue  # a ModuleList of a sequence with extra inputs is never called itself
        built = _as_list(records[n])
        errs = [relative_error(g, b) for g, b in zip(outs, built)]
        if len(built) != len(outs) or not all(e <= rtol for e in errs):
            kind = child.kind if isinstance(child, Leaf) else (
                "sequential" if isinstance(child, Seq) else child.name)
            return (f"{_where(child.span)}: {kind} `{path}` is the first layer to differ "
                    f"(relative error {max(errs, default=float('inf')):.3g}): ")
    return "every layer agrees, so a functional op differs: "


def check_output_types(spec, built: list) -> None:
    """The built module's outputs have the shapes and dtypes the checked IR gives them."""
    for i, (t, v) in enumerate(zip(built, spec.ir.outputs)):
        dtype = "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "long"
        got = f"{fmt_shape(tuple(t.shape[1:]))} {dtype}"
        want = f"{fmt_shape(v.type.shape)} {v.type.dtype}"
        if got != want or t.shape[:1] != (BATCH,):
            raise AssertionError(f"{_where(spec.ir.span)}: output {i} of {spec.ir.name}: the "
                                 f"checked IR says {want}, the built module gives {got}")


def check_params(spec, model: nn.Module, summary: dict) -> None:
    unique = sum(p.numel() for p in model.parameters())  # parameters() lists a shared one once
    if summary["params"] != unique:
        raise AssertionError(f"{_where(spec.ir.span)}: model {spec.ir.name}: the summary counts "
                             f"{summary['params']:,} parameters, the built module has {unique:,}")


def _shape_text(out) -> list[str]:
    texts = []
    for t in _as_list(out):
        texts.append(fmt_shape(tuple(t.shape[1:])) if t.shape[:1] == (BATCH,) else
                     f"{tuple(t.shape)} (no batch dim of {BATCH})")
    return texts


def check_shapes(spec, model: nn.Module, summary: dict, calls: dict) -> None:
    """Each summary row of a called module against the shapes its hook saw, call by call."""
    used: dict[str, int] = {}
    spans = _spans(spec.ir)
    for row in summary["layers"]:
        name = row["name"]
        if name.rsplit(".", 1)[-1].startswith("("):
            continue  # a functional op: no module to hook
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue  # a bare nn.Parameter (kind `parameter`)
        if isinstance(module, nn.ModuleList):
            continue  # its items are called one by one
        n = used.get(name, 0)
        used[name] = n + 1
        records = calls.get(name, [])
        where = spans.get(name, _where(spec.ir.span))
        if n >= len(records):
            raise AssertionError(f"{where}: {row['kind']} `{name}`: the summary lists call "
                                 f"{n + 1}, but the built module ran it {len(records)} times")
        want = row["output_shape"]  # ["B", 4, 3], or one such list per tensor
        want = [shape_text(s) for s in (want if want and isinstance(want[0], list) else [want])]
        seen = _shape_text(records[n])
        if want != seen:
            raise AssertionError(f"{where}: {row['kind']} `{name}`: the summary says "
                                 f"{', '.join(want)}, the built module gave {', '.join(seen)}")


def _spans(root: ModuleDef) -> dict[str, str]:
    """Module path -> 'file:line' of the spec text that made it."""
    out: dict[str, str] = {}

    def walk(child, prefix):
        if prefix:
            out.setdefault(prefix, _where(child.span))
        if isinstance(child, Seq):
            for i, item in enumerate(child.items):
                walk(item, f"{prefix}.{i}" if prefix else str(i))
        elif isinstance(child, ModuleDef):
            for name, c in child.children:
                walk(c, f"{prefix}.{name}" if prefix else name)
    walk(root, "")
    return out


def unseen_flops(module: ModuleDef, prefix: str = "", per_layer: dict | None = None,
                 parts: list | None = None) -> int:
    """Per sample, the FLOPs the summary counts that flop_counter cannot see on the CPU; with
    `per_layer`, also each layer module's part by path (summed over its calls); with `parts`,
    each functional op's part."""
    total = 0
    for op in module.ops:
        types = [v.type for v in op.args] + [v.type for v in op.kwargs.values()]
        outs = tuple(v.type for v in op.outs)
        if op.target is None:
            n = op.layer.flops_unseen_on_cpu(types, outs)
            if parts is not None and n:
                parts.append(n)
            total += n
            continue
        path = _child_path(prefix, module.child_name(op.target))
        if isinstance(op.target, Leaf):
            n = op.layer.flops_unseen_on_cpu(types, outs)
            if per_layer is not None:
                per_layer[path] = per_layer.get(path, 0) + n
            total += n
        else:
            total += _child_unseen(op.target, path, per_layer, parts)
    return total


def _child_path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _child_unseen(child, path: str, per_layer: dict | None, parts: list | None = None) -> int:
    if isinstance(child, ModuleDef):
        return unseen_flops(child, path, per_layer, parts)
    if isinstance(child, Seq):
        return sum(_child_unseen(item, _child_path(path, str(i)), per_layer, parts)
                   for i, item in enumerate(child.items))
    outs = child.layer.infer(child.ins)
    n = child.layer.flops_unseen_on_cpu(child.ins, outs if isinstance(outs, tuple) else (outs,))
    if per_layer is not None:
        per_layer[path] = per_layer.get(path, 0) + n
    return n


def check_flops(spec, model: nn.Module, inputs: list, summary: dict) -> int:
    """flop_counter on a float32 copy (the dtype the unseen parts are stated for)."""
    m32 = copy.deepcopy(model).float()
    # no_grad alone is not enough: a view of a parameter made under no_grad (parameter's expand)
    # still requires grad but has no grad_fn, and flop_counter's module tracker fails on it
    m32.requires_grad_(False)
    xs = [x.float() if x.is_floating_point() else x for x in inputs]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m32(*xs)
    counted = counter.get_total_flops()
    parts: list[int] = []
    expected = BATCH * (summary["flops"] - unseen_flops(spec.ir, parts=parts))
    # a functional sdpa is fused (unseen) only when its inputs suit the CPU kernel: a query with
    # a strided last dim (after a transpose) takes the math path, whose matmuls are seen
    seen_anyway = {0}
    for n in parts:
        seen_anyway |= {s + BATCH * n for s in seen_anyway}
    if counted - expected not in seen_anyway:
        raise AssertionError(f"{_where(spec.ir.span)}: model {spec.ir.name}: the summary's FLOPs "
                             f"less the unseen part give {expected:,} for a batch of {BATCH}, "
                             f"flop_counter counted {counted:,}{_flops_by_layer(spec, counter)}")
    return counted


def _flops_by_layer(spec, counter) -> str:
    """The layers whose count differs: the summary's FLOPs (less the unseen part) per layer
    module against flop_counter's count for that module."""
    unseen: dict[str, int] = {}
    unseen_flops(spec.ir, "", unseen)
    summary: dict[str, int] = {}
    for row in spec.summary()["layers"]:
        if row["name"] in unseen:
            summary[row["name"]] = summary.get(row["name"], 0) + row["flops"]
    counts = {name.split(".", 1)[1]: sum(c.values())
              for name, c in counter.get_flop_counts().items() if "." in name}
    spans = _spans(spec.ir)
    parts = []
    for name, flops in summary.items():
        want = BATCH * (flops - unseen[name])
        if counts.get(name, 0) != want:
            parts.append(f"{spans.get(name, '?')}: `{name}` summary {want:,}, flop_counter "
                         f"{counts.get(name, 0):,}")
    return ("; differing layers: " + "; ".join(parts[:8])) if parts else \
        "; every layer module agrees, so a functional op differs"
