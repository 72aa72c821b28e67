"""`nnspec export SPEC --onnx model.onnx`: the spec's module as an ONNX file, checked before it is
written.

The exporter is torch's own `torch.onnx.export(..., dynamo=True)`, the torch.export-based one
(it needs onnxscript). The TorchScript-based exporter (`dynamo=False`) warns in torch 2.14 that
it will be removed, and the dynamo-based one is torch's default since 2.9.

The file appears whole or not at all (outputs.replace_file): it is saved beside the destination,
passes `onnx.checker.check_model` (with shape inference), and onnxruntime must compute the
PyTorch module's outputs on a fresh random batch of another size than the traced one (so the
batch dimension really is dynamic), before it is renamed into place. Its metadata marks it as
nnspec's, so a later export may replace it, and nothing else.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from nnspec.outputs import OutputError, check_file, replace_file

MARKER_KEY = "nnspec.export"   # metadata_props key of every file nnspec writes
ATOL, RTOL = 1e-4, 1e-3        # float32 through another runtime: sums in another order
TRACE_BATCH, CHECK_BATCH = 2, 3  # torch.export specializes batch 0 and 1; check on another size
MAX_FILE = 2 ** 31 - 2 ** 26   # protobuf's 2 GiB limit, less room for the graph itself
SEED = 0


class OnnxExportError(Exception):
    """The model cannot be exported, or the file does not compute what the module does."""


@dataclass
class Exported:
    """What was written and how it was checked."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    opset: int
    max_abs_diff: float
    atol: float = ATOL
    rtol: float = RTOL
    shapes: dict[str, str] = field(default_factory=dict)


def missing_packages() -> list[str]:
    """The packages the export needs that are not installed (the `onnx` extra)."""
    import importlib.util

    return [name for name in ("onnx", "onnxscript", "onnxruntime")
            if importlib.util.find_spec(name) is None]


def newest_opset() -> int:
    """The newest opset the installed onnx knows."""
    import onnx

    return onnx.defs.onnx_opset_version()


def check_onnx_output(path: str, flag: str = "--onnx") -> Path:
    """A path the export may write: missing, or an earlier nnspec ONNX export; checked before any
    work so that a bad path costs nothing."""
    target = check_file(path, flag)
    if target.exists() and not is_nnspec_export(target):
        raise OutputError(f"{flag} {path}: exists and is not an ONNX file written by nnspec; "
                          "nnspec never replaces other files: choose another name, or remove it")
    return target


def is_nnspec_export(path: Path) -> bool:
    """Whether `path` is an ONNX model whose metadata says nnspec wrote it."""
    try:
        if path.stat().st_size > MAX_FILE + 2 ** 26:
            return False
        import onnx
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return any(p.key == MARKER_KEY for p in model.metadata_props)


def output_names(spec) -> list[str]:
    """The graph's output names: the names of the model's `out` statement when it names plain
    values (`out h, pooled`), else `output` (one) or `output0`, `output1`, ..."""
    from nnspec.lang import syntax as S

    count = len(spec.ir.outputs)
    default = ["output"] if count == 1 else [f"output{i}" for i in range(count)]
    defn = spec.program.definitions.get(spec.ir.name)
    outs = [s for s in (defn.body if defn else ()) if isinstance(s, S.Outputs)]
    if len(outs) != 1 or not all(isinstance(v, S.Name) for v in outs[0].values):
        return default
    names = [v.id for v in outs[0].values]
    clash = set(names) & set(spec.ir.input_names)
    return names if len(names) == count and len(set(names)) == count and not clash else default


def export_onnx(spec, dest: str | Path, weights: str | Path | None = None,
                opset: int | None = None) -> Exported:
    """Export `spec`'s module (with `weights`, else seeded random init) to `dest`.

    Raises:
        OnnxExportError: a layer the exporter cannot translate (named with its spec line), an
            opset it cannot reach, or a file that onnxruntime runs to other outputs. Nothing is
            written then.
        SpecError, WeightsFileError, UnsafeCheckpoint: from `spec.build(weights=...)`.
    """
    import torch

    _check_size(spec)
    torch.manual_seed(SEED)
    model = spec.build(weights=weights).eval()
    gen = torch.Generator().manual_seed(SEED)
    from nnspec.export.inputs import draw_inputs
    traced = draw_inputs(spec.ir, gen, TRACE_BATCH, torch.float32)
    checked = draw_inputs(spec.ir, gen, CHECK_BATCH, torch.float32)
    names = list(spec.ir.input_names)
    outs = output_names(spec)
    proto = _export(spec, model, traced, names, outs, opset)
    result = Exported(Path(dest), names, outs, _opset_of(proto), 0.0)
    result.shapes = _shapes(proto)

    def write(tmp: Path) -> None:
        import onnx
        onnx.save_model(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as err:  # noqa: BLE001 - onnx raises several kinds
            raise OnnxExportError(f"the exported model fails onnx.checker: {_first(err)}") from None
        result.max_abs_diff = _compare(tmp, model, checked, names, outs)

    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        replace_file(Path(dest), write)
    except OSError as err:  # a full disk, a folder made read-only since the check
        raise OnnxExportError(f"cannot write {dest}: {err.strerror or err}") from None
    return result


def _check_size(spec) -> None:
    size = spec.summary()["params"] * 4
    if size > MAX_FILE:
        raise OnnxExportError(f"the weights take {size / 2 ** 30:.1f} GiB in float32; one ONNX "
                              "file holds at most 2 GiB (external data files are not written)")


def _export(spec, model, xs, names, outs, opset):
    """torch.onnx.export with a dynamic batch dimension; the ModelProto, marked as nnspec's."""
    import torch
    from nnspec import __version__

    batch = torch.export.Dim("batch")
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_logs():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, tuple(xs), dynamo=True, verbose=False,
                                        input_names=names, output_names=outs,
                                        opset_version=opset, external_data=False,
                                        dynamic_shapes=tuple({0: batch} for _ in xs))
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds; each is reported
        raise OnnxExportError(_failure(spec, err)) from None
    proto = program.model_proto
    if opset is not None and _opset_of(proto) != opset:
        raise OnnxExportError(f"--opset {opset}: torch's exporter could not convert this model to "
                              f"opset {opset} (it kept {_opset_of(proto)}); use --opset 18 or "
                              "later")
    proto.doc_string = spec.ir.signature
    entry = proto.metadata_props.add()
    entry.key, entry.value = MARKER_KEY, f"nnspec {__version__}: {spec.source_name}"
    return proto


@contextlib.contextmanager
def _quiet_logs():
    """The exporter logs its steps and opset fallbacks at WARNING; the command reports those."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export",
                                              "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _failure(spec, err: BaseException) -> str:
    """One line naming the layer kind and spec line the exporter failed on, and why."""
    from nnspec.export.locate import locate

    why = _reason(err)
    where = locate(spec.ir, spec.source, err)
    if where is None:
        return f"torch's ONNX exporter cannot export {spec.name}: {why}"
    kind, span = where
    return f"{span}: layer kind `{kind}` cannot be exported to ONNX by torch's exporter: {why}"


def _reason(err: BaseException) -> str:
    """The innermost message of the exception chain, first line, without terminal colours."""
    inner = err
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return _first(inner)


def _first(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    return (text.splitlines() or [type(err).__name__])[0]


def _opset_of(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _shapes(proto) -> dict[str, str]:
    """Each graph input and output as `[batch, 3, 32, 32] float32`."""
    import onnx

    out = {}
    for value in list(proto.graph.input) + list(proto.graph.output):
        t = value.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        out[value.name] = f"[{', '.join(dims)}] {dtype}"
    return out


def _compare(path: Path, model, xs, names, outs) -> float:
    """Run the file in onnxruntime and the module in torch on `xs`; the largest difference.

    Raises:
        OnnxExportError: an output differs beyond ATOL + RTOL * |torch's value|.
    """
    import numpy as np
    import torch

    got = run_onnxruntime(path, dict(zip(names, (x.numpy() for x in xs))))
    with torch.no_grad():
        want = model(*xs)
    want = [w.numpy() for w in (want if isinstance(want, (tuple, list)) else (want,))]
    worst = 0.0
    for name, g, w in zip(outs, got, want):
        if g.shape != w.shape:
            raise OnnxExportError(f"onnxruntime gives output `{name}` the shape {list(g.shape)}, "
                                  f"PyTorch {list(w.shape)}")
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        worst = max(worst, float(diff.max(initial=0.0)))
        if not np.allclose(g, w, atol=ATOL, rtol=RTOL, equal_nan=True):
            raise OnnxExportError(f"onnxruntime's output `{name}` differs from PyTorch's: max abs "
                                  f"diff {float(diff.max()):.3g} (atol {ATOL:g}, rtol {RTOL:g}); "
                                  "the file was not written")
    return worst


def run_onnxruntime(path: Path, feeds: dict) -> list:
    """The outputs of the ONNX file at `path` for `feeds`, on onnxruntime's CPU provider."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph optimizations
    try:
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    except Exception as err:  # noqa: BLE001 - onnxruntime's own error kinds
        raise OnnxExportError(f"onnxruntime cannot run the exported model: {_first(err)}") from None
