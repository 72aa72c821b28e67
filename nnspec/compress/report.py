"""What a compression gained: parameters, non-zero parameters, size on disk, latency and the task
metric, before and after, as report.json and a printed table.

Latency is the median of repeated forwards at one batch size and one thread count, with the
before and after models measured in the same process, alternating, so that a busy machine slows
both alike.
"""
from __future__ import annotations

import io
import statistics
import time

import numpy as np
import torch
from torch import nn

SPARSE_AT = 0.5   # tensors with at least this fraction of zeros are stored as mask + values


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a float model."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def pack_state(state: dict) -> dict:
    """A state_dict where mostly-zero float tensors become {mask bits, non-zero values}: the
    on-disk form of unstructured pruning (Han et al. store pruned weights sparsely too)."""
    out = {}
    for name, t in state.items():
        if torch.is_tensor(t) and t.is_floating_point() and not t.is_quantized and t.numel() > 64:
            nz = t != 0
            if 1 - nz.float().mean().item() >= SPARSE_AT:
                bits = np.packbits(nz.flatten().numpy())
                out[name] = {"shape": tuple(t.shape), "mask": torch.from_numpy(bits),
                             "values": t[nz].clone()}
                continue
        out[name] = t
    return out


def unpack_state(packed: dict) -> dict:
    """The inverse of `pack_state`: dense tensors again."""
    out = {}
    for name, t in packed.items():
        if isinstance(t, dict) and "mask" in t:
            n = int(np.prod(t["shape"]))
            mask = torch.from_numpy(np.unpackbits(t["mask"].numpy())[:n].astype(bool))
            dense = torch.zeros(n, dtype=t["values"].dtype)
            dense[mask] = t["values"]
            out[name] = dense.view(t["shape"])
        else:
            out[name] = t
    return out


def serialize(model: nn.Module) -> bytes:
    """The bytes of model.pt: torch.save of the packed state_dict (quantized weights included)."""
    buf = io.BytesIO()
    torch.save(pack_state(model.state_dict()), buf)
    return buf.getvalue()


@torch.no_grad()
def latencies(models: list[nn.Module], example: tuple, runs: int, warmup: int = 5) -> list[float]:
    """Median milliseconds per forward of each model on `example`, interleaved run by run."""
    for m in models:
        m.eval()
        for _ in range(warmup):
            m(*example)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for i, m in enumerate(models):
            t = time.perf_counter()
            m(*example)
            times[i].append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def example_batch(session, batch: int) -> tuple:
    """`batch` test samples (repeated when the test split is smaller)."""
    n = len(session.data.test)
    idx = torch.arange(batch) % n
    return session.data.test.take(idx)[0]


def entry(params: int, nonzero: int, size: int, latency: float, metrics: dict,
          metric: str) -> dict:
    return {"params": params, "nonzero_params": nonzero, "size_bytes": size,
            "latency_ms": round(latency, 4), metric: round(metrics[metric], 6),
            "loss": round(metrics["loss"], 6)}


def ratios(before: dict, after: dict) -> dict:
    return {"speedup": round(before["latency_ms"] / after["latency_ms"], 3),
            "size_ratio": round(before["size_bytes"] / after["size_bytes"], 3)}


def table(report: dict) -> str:
    """The report as a plain-text table."""
    metric = report["metric"]
    cols = ["params", "nonzero_params", "size_bytes", "latency_ms", metric]
    rows = [("before", report["before"]), ("after", report["after"])]
    if "student_alone" in report:
        rows.append(("student_alone", report["student_alone"]))
    width = max(len(c) for c in cols) + 2
    lines = [f"{'':<15}" + "".join(f"{c:>{width}}" for c in cols)]
    for name, row in rows:
        cells = "".join(f"{_fmt(row.get(c)):>{width}}" for c in cols)
        lines.append(f"{name:<15}{cells}")
    lines.append(f"speedup {report['speedup']:.2f}x, size ratio {report['size_ratio']:.2f}x, "
                 f"{metric} {report['before'][metric]:.4f} -> {report['after'][metric]:.4f}")
    d = report.get("distill")
    if d is not None:
        few = f" on {d['labels']:.0%} of the labels" if d["labels"] < 1 else ""
        lines.append(f"distilled {metric} {d[f'distilled_{metric}_mean']:.4f} vs alone "
                     f"{d[f'alone_{metric}_mean']:.4f}{few}, mean of {len(d['seeds'])} seeds")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 100 else f"{v:,.1f}"
    return f"{v:,}"
