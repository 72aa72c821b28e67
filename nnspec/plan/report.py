"""Render plans: the text table `nnspec plan` prints, and the JSON of `--json`."""
from __future__ import annotations

import json

from nnspec.plan.estimate import gib
from nnspec.plan.search import describe

COLUMNS = ("#", "zero", "offload", "stages", "tp", "dp", "micro x accum", "ckpt", "params", "grads",
           "optim", "activ", "buffers", "GPU total", "CPU/node", "build/rank", "PFLOP/step",
           "comm s", "step s", "fits")


def to_json(params: int, plans: list[dict]) -> str:
    """`{"params": N, "configs": [...]}`, the configs as evaluated (sorted keys, indented)."""
    return json.dumps({"params": params, "configs": plans}, indent=2, sort_keys=True)


def table(plans: list[dict]) -> str:
    """One row per plan: memory per GPU by kind, CPU per machine, what one rank allocates to
    construct its model (build/rank), FLOPs per step, and time per step: of it communication
    (data-parallel gradients, pipeline sends, tensor-parallel all-reduces), and in all."""
    rows = [_row(i, p) for i, p in enumerate(plans, 1)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(COLUMNS)]

    def fmt(r):
        return "  ".join(c.rjust(w) if 8 <= i <= 18 or i in (0, 3, 4, 5) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "-" * len(fmt(COLUMNS))
    return "\n".join([fmt(COLUMNS), rule, *map(fmt, rows)]) + "\n"


def _row(i: int, p: dict) -> tuple[str, ...]:
    gpu = p["per_gpu_bytes"]
    off = [f"opt:{p['offload_optimizer']}"] if p["offload_optimizer"] != "none" else []
    off += [f"param:{p['offload_param']}"] if p["offload_param"] != "none" else []
    return (str(i), str(p["zero_stage"]), ",".join(off) or "-", str(p["pipeline_stages"]),
            str(p["tensor_parallel"]), str(p["data_parallel"]), f"{p['micro_batch']} x {p['grad_accum']}",
            "yes" if p["activation_checkpointing"] else "-",
            *(_g(gpu[k]) for k in ("params", "grads", "optimizer", "activations", "buffers",
                                   "total")),
            _g(p["per_cpu_bytes"]), _g(p["construct_bytes_per_rank"]),
            f"{p['step_flops'] / 1e15:.2f}", f"{p['time']['comm']:.2f}",
            f"{p['est_step_seconds']:.2f}",
            "yes" if p["fits"] else f"no (-{_g(p['shortfall_bytes'])})" if p["shortfall_bytes"]
            else "no (CPU)")


def _g(n: int) -> str:
    """GiB with one decimal, as a bare number for the table."""
    return f"{n / 2 ** 30:.1f}"


def explain(p: dict) -> str:
    """One line on a plan: what it is, its verdict and where the time goes."""
    t = p["time"]
    parts = [f"compute {t['compute']:.2f} s"]
    if t["bubble"]:
        parts.append(f"bubble {t['bubble']:.2f} s ({t['bubble_fraction']:.0%})")
    if t["comm"] >= 0.005:
        tp = t["tensor_comm"]
        parts.append(f"communication {t['comm']:.2f} s" + (
            f", of it tensor all-reduces {tp:.2f} s" if tp >= 0.005 else ""))
    if t["offload"] >= 0.005 or p["offload_optimizer"] != "none":
        parts.append(f"offload {t['offload'] + t['optimizer']:.2f} s")
    ckpt = f", checkpointing {', '.join(p['activation_checkpointing'])}" \
        if p["activation_checkpointing"] else ""
    return (f"{describe(p)}, micro_batch {p['micro_batch']} x grad_accum {p['grad_accum']}{ckpt}: "
            f"{p['reasons'][0]}; est {p['est_step_seconds']:.2f} s/step ({', '.join(parts)})")


def header(name: str, params: int, flops: int, cluster, profile, precision: str,
           optimizer: str, state_bytes: int) -> str:
    c = 4 if precision == "fp32" else 2
    return (f"{name}: {params:,} parameters, {flops / 1e9:,.1f} GFLOPs forward per sample\n"
            f"cluster: {cluster.nodes} x {cluster.gpus_per_node} GPUs ({profile.name}), "
            f"{gib(cluster.gpu_memory)} per GPU"
            + (f", {gib(cluster.cpu_memory)} CPU memory per machine" if cluster.cpu_memory
               else ", CPU memory not checked (--cpu-memory)") + "\n"
            f"training: {precision}, {optimizer} ({c} bytes/param weights, {state_bytes} bytes/"
            f"param optimizer state{' + 4 fp32 master' if c == 2 else ''}); memory in GiB\n")
