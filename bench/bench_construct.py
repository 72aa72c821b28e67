"""Sharded construction: host memory per rank under the real `deepspeed` runner, 2 CPU ranks.

A 202M-parameter MLP (fp32, AdamW; 0.8 GB per whole copy) is set up three ways, one launch
each: ZeRO-0 (every rank holds the whole model), ZeRO-3 (constructed inside zero.Init) and a
2-stage pipeline (each rank materializes its stage). Every rank seeds and builds its backend as
`nnspec train` does (loop.backend_for), then trains one step; it reports

* construction: its peak RSS up to `deepspeed.initialize`, less its RSS before construction,
  beside `nnspec plan`'s build/rank figure for the same layout (construct_bytes_per_rank);
* peak RSS through construction and the first step (the process's high-water mark).

Targets (issue 13): ZeRO-3's peak <= 0.6x ZeRO-0's; a pipeline stage's peak <= 0.6x the whole
model's (ZeRO-0's, the same training without stages); the plan within 15% of the measured
construction.

Run: .venv/bin/python bench/bench_construct.py [--precision bf16] [--zero3-limits]
(about 10 GB of memory at its peak; --zero3-limits adds a ZeRO-3 run with DeepSpeed's
live-parameter and bucket limits at two layers, a config nnspec does not emit.)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402

HIDDEN = 7100
SPEC = f"""model wide_mlp(num_classes = 10, hidden = {HIDDEN}) {{
  input x: float[1, 8, 8]
  flatten
  fc1: linear(hidden)
  relu
  fc2: linear(hidden)
  relu
  fc3: linear(hidden)
  relu
  fc4: linear(hidden)
  relu
  fc5: linear(hidden)
  relu
  head: linear(num_classes)
}}

train {{
  optimizer = adamw(lr = 1e-4)
  batch_size = 8
  steps = 4
}}
"""
LAYOUTS = {"zero0": {"zero": 0}, "zero3": {"zero": 3}, "pipeline": {"pipeline_stages": 2}}
# DeepSpeed's ZeRO-3 defaults keep up to 1e9 gathered parameters alive and a 5e8-element gradient
# bucket: for a 200M model, the whole model gathered beside its shard. --zero3-limits sizes them
# to the largest layer (a run-time config change, reported as its own row).
LIMITS = ("stage3_max_live_parameters", "stage3_max_reuse_distance",
          "stage3_prefetch_bucket_size", "reduce_bucket_size")
TARGET, PLAN_TOLERANCE = 0.6, 0.15


def spec_for(layout: str, precision: str = "fp32"):
    sets = {f"parallel.{k}": v for k, v in LAYOUTS[layout.split("+")[0]].items()}
    return nnspec.loads(SPEC, sets={**sets, "parallel.precision": precision}, world_size=2)


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def worker(layout: str, out: Path, precision: str) -> None:
    """One rank: construct (measured up to deepspeed.initialize), then one training step."""
    import deepspeed

    from nnspec.train import distributed
    from nnspec.train.batches import seed_everything
    from nnspec.train.loop import _emit, backend_for, check_settings
    from nnspec.lang.config import resolve_layout

    torch.set_num_threads(1)
    spec = spec_for(layout, precision)
    train, parallel = spec.settings.train, spec.settings.parallel
    distributed.init_process_group()
    rank, world = distributed.rank(), distributed.world_size()
    objective = check_settings(train, parallel, world)
    config = _emit(train, parallel, world, train.steps)
    if layout.endswith("+limits"):
        config["zero_optimization"].update({k: 2 * HIDDEN * HIDDEN for k in LIMITS})
    accum = resolve_layout(train, parallel, world).grad_accum
    marks = {}
    initialize = deepspeed.initialize

    def measured(*args, **kwargs):  # construction is over when the engine is made
        marks["constructed_peak"] = peak()
        return initialize(*args, **kwargs)

    deepspeed.initialize = measured
    distributed.barrier()
    before = rss_now()
    seed_everything(train.seed)
    backend = backend_for(spec, train, parallel, config, objective, multi=True)
    deepspeed.initialize = initialize
    initialized = peak()
    micro = train.batch_size // (accum * (world // parallel.pipeline_stages))
    batch = [([torch.randn(micro, 1, 8, 8)], torch.randint(0, 10, (micro,)))] * accum
    backend.train_step(batch, objective)
    result = {"layout": layout, "rank": rank, "rss_before": before,
              "construction": marks["constructed_peak"] - before, "initialized": initialized,
              "peak": peak()}
    (out / f"{layout}-rank{rank}.json").write_text(json.dumps(result))
    backend.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_all(layouts: list[str], precision: str) -> list[dict]:
    deepspeed = Path(sys.executable).parent / "deepspeed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in layouts:  # one at a time: the machine is shared
            cmd = [str(deepspeed), "--num_accelerators", "2", "--master_port", str(free_port()),
                   str(Path(__file__).resolve()), "--worker", layout, "--worker-out", tmp,
                   "--precision", precision]
            t0 = time.time()
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=1200)
            if r.returncode != 0:
                sys.exit(f"{layout} launch failed:\n{(r.stdout + r.stderr)[-4000:]}")
            print(f"  {layout} launch: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            for rank in (0, 1):
                results.append(json.loads((Path(tmp) / f"{layout}-rank{rank}.json").read_text()))
    return results


def planned(layout: str, precision: str, rank: int) -> int:
    """`nnspec plan`'s build/rank for this layout and rank on 2 ranks (a pipeline's rank r
    holds stage r)."""
    from nnspec.plan import Cluster, Model, evaluate, load_profile, spec_choice

    spec = spec_for(layout, precision)
    model = Model(spec.ir, spec.settings.train, spec.settings.parallel)
    cluster = Cluster(2)
    choice, _ = spec_choice(model, cluster)
    plan = evaluate(model, choice, cluster, load_profile("cpu"))
    if "stages" in plan:
        return plan["stages"][rank]["construct_bytes_per_rank"]
    return plan["construct_bytes_per_rank"]


def report(results: list[dict], precision: str) -> bool:
    params = spec_for("zero0").summary()["params"]
    mb = 2 ** 20
    print(f"\nSharded construction, 2 ranks under the deepspeed runner, {params / 1e6:.1f}M-"
          f"parameter MLP, AdamW, {precision} ({4 * params / mb:,.0f} MB per whole fp32 copy)")
    print(f"{'layout':<15}{'rank':>5}{'base MB':>9}{'construct MB':>14}{'plan MB':>9}"
          f"{'plan/meas':>11}{'after init MB':>15}{'peak RSS MB':>13}{'vs ZeRO-0':>11}")
    zero0 = {r["rank"]: r for r in results if r["layout"] == "zero0"}
    base = {rank: r["peak"] for rank, r in zero0.items()}
    agree_ok = True
    for r in results:
        plan = planned(r["layout"].split("+")[0], precision, r["rank"])
        agree = plan / r["construction"]
        agree_ok &= abs(agree - 1) <= PLAN_TOLERANCE
        print(f"{r['layout']:<15}{r['rank']:>5}{r['rss_before'] / mb:>9,.0f}"
              f"{r['construction'] / mb:>14,.0f}{plan / mb:>9,.0f}{agree:>11.2f}"
              f"{r['initialized'] / mb:>15,.0f}{r['peak'] / mb:>13,.0f}"
              f"{r['peak'] / base[r['rank']]:>11.2f}")
    ok = agree_ok
    for layout, label in (("zero3", "ZeRO-3 vs ZeRO-0"),
                          ("zero3+limits", "ZeRO-3 (limits) vs ZeRO-0"),
                          ("pipeline", "pipeline stage vs whole model")):
        mine = [r["peak"] / base[r["rank"]] for r in results if r["layout"] == layout]
        if not mine:
            continue
        ratio = max(mine)
        ok &= ratio <= TARGET or layout.endswith("+limits")
        grown = max((r["peak"] - r["rss_before"]) / (zero0[r["rank"]]["peak"] - zero0[r["rank"]][
            "rss_before"]) for r in results if r["layout"] == layout)
        print(f"{label}: peak RSS ratio {ratio:.2f} (target <= {TARGET}) "
              f"{'ok' if ratio <= TARGET else 'OVER'}; above the RSS before construction "
              f"(Python, torch, DeepSpeed): {grown:.2f}")
    print(f"plan build/rank within {PLAN_TOLERANCE:.0%} of the measured construction: "
          f"{'ok' if agree_ok else 'NO'}")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--zero3-limits", action="store_true",
                   help="also run ZeRO-3 with its live-parameter and bucket limits at 2 layers")
    p.add_argument("--only", nargs="*", help="these layouts (zero0 always runs: the baseline)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, Path(args.worker_out), args.precision)
        return
    layouts = ["zero0"] + [n for n in LAYOUTS if n != "zero0" and (not args.only or n in args.only)]
    if args.zero3_limits:
        layouts.append("zero3+limits")
    sys.exit(0 if report(launch_all(layouts, args.precision), args.precision) else 1)


if __name__ == "__main__":
    main()
