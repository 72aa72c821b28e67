"""Sharded construction: host memory per rank under the real `deepspeed` runner, 2 CPU ranks.

A 200M-parameter MLP of eight equal layers (AdamW; 0.8 GB per whole fp32 copy) is set up three
ways, one launch each: ZeRO-0 (every rank holds the whole model), ZeRO-3 (constructed inside
zero.Init) and a 2-stage pipeline (each rank materializes its four layers). Every rank seeds and builds its backend as
`nnspec train` does (loop.backend_for, with the DeepSpeed config `nnspec train` emits), then
trains two steps; it reports

* construction: its peak RSS up to `deepspeed.initialize`, less its RSS before construction,
  beside `nnspec plan`'s build/rank figure for the same layout (construct_bytes_per_rank);
* peak RSS through construction and the first step (the process's high-water mark), and where
  it was reached: after initialize, after the first backward pass, after the first optimizer
  step; and the peak through a second step (ZeRO-3 gathers by its recorded trace from then on).

Targets (issue 13): ZeRO-3's peak <= 0.6x ZeRO-0's; a pipeline stage's peak <= 0.6x the whole
model's (ZeRO-0's, the same training without stages); the plan within 15% of the measured
construction.

Run: .venv/bin/python bench/bench_construct.py [--precision bf16] [--only zero3 pipeline]
(about 10 GB of memory at its peak.)
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

HIDDEN, DEPTH = 5000, 8  # eight equal layers: a 2-stage cut puts four on each stage
LAYERS = "\n".join(f"  fc{i}: linear(hidden)\n  relu" for i in range(1, DEPTH + 2))
SPEC = f"""model wide_mlp(num_classes = 10, hidden = {HIDDEN}) {{
  input x: float[1, 8, 8]
  flatten
{LAYERS}
  head: linear(num_classes)
}}

train {{
  optimizer = adamw(lr = 1e-4)
  batch_size = 8
  steps = 4
}}
"""
LAYOUTS = {"zero0": {"zero": 0}, "zero3": {"zero": 3}, "pipeline": {"pipeline_stages": 2}}
TARGET, PLAN_TOLERANCE = 0.6, 0.15
# engine methods after which a rank notes its peak RSS in the first step: DeepSpeedEngine's, and
# PipelineEngine's instructions (run from its class's _INSTRUCTION_MAP)
PHASES = {"backward": "bwd", "step": "opt"}
PIPE_PHASES = {"BackwardPass": "bwd", "OptimizerStep": "opt"}


def spec_for(layout: str, precision: str = "fp32"):
    sets = {f"parallel.{k}": v for k, v in LAYOUTS[layout].items()}
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

    from nnspec.ir import largest_layer
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
    config = _emit(train, parallel, world, train.steps, largest_layer(spec.ir))
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
    engine = backend.engine
    if hasattr(engine, "_INSTRUCTION_MAP"):  # a PipelineEngine
        engine._INSTRUCTION_MAP = {cmd: noting(run, PIPE_PHASES[cmd.__name__], marks)
                                   if cmd.__name__ in PIPE_PHASES else run
                                   for cmd, run in type(engine)._INSTRUCTION_MAP.items()}
    else:
        for name, phase in PHASES.items():
            setattr(engine, name, noting(getattr(engine, name), phase, marks))
    backend.train_step(batch, objective)
    first = peak()
    for name in [*PHASES, "_INSTRUCTION_MAP"]:  # the instance attributes set above
        engine.__dict__.pop(name, None)
    backend.train_step(batch, objective)
    result = {"layout": layout, "rank": rank, "rss_before": before,
              "construction": marks["constructed_peak"] - before, "initialized": initialized,
              "bwd": marks.get("bwd", 0), "opt": marks.get("opt", 0), "peak": first,
              "peak2": peak()}
    (out / f"{layout}-rank{rank}.json").write_text(json.dumps(result))
    backend.close()


def noting(method, phase: str, marks: dict):
    """`method`, noting the peak RSS after its first call as marks[phase]."""
    def call(*args, **kwargs):
        out = method(*args, **kwargs)
        marks.setdefault(phase, peak())
        return out
    return call


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
                print(f"{layout} launch failed:\n{(r.stdout + r.stderr)[-4000:]}", file=sys.stderr)
                continue
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
          f"parameter MLP, AdamW, {precision} ({4 * params / mb:,.0f} MB per whole fp32 copy); "
          "MB = MiB of RSS")
    print(f"{'layout':<9}{'rank':>5}{'base':>7}{'construct':>10}{'plan':>7}{'plan/meas':>10}"
          f"{'init':>7}{'bwd':>7}{'opt':>7}{'peak 1':>8}{'vs ZeRO-0':>10}{'peak 2':>8}"
          f"{'vs ZeRO-0':>10}")
    zero0 = {r["rank"]: r for r in results if r["layout"] == "zero0"}
    agree_ok = True
    for r in results:
        plan = planned(r["layout"], precision, r["rank"])
        agree = plan / r["construction"]
        agree_ok &= abs(agree - 1) <= PLAN_TOLERANCE
        z = zero0[r["rank"]]
        print(f"{r['layout']:<9}{r['rank']:>5}{r['rss_before'] / mb:>7,.0f}"
              f"{r['construction'] / mb:>10,.0f}{plan / mb:>7,.0f}{agree:>10.2f}"
              + "".join(f"{r[k] / mb:>7,.0f}" for k in ("initialized", "bwd", "opt"))
              + f"{r['peak'] / mb:>8,.0f}{r['peak'] / z['peak']:>10.2f}"
              f"{r['peak2'] / mb:>8,.0f}{r['peak2'] / z['peak2']:>10.2f}")
    print("(base: RSS before construction, Python + torch + DeepSpeed + the process group; init,"
          " bwd, opt: peak RSS after deepspeed.initialize, the first backward pass, the first "
          "optimizer step; peak 1/2: through the first/second step)")
    ok = agree_ok
    for layout, label in (("zero3", "ZeRO-3 vs ZeRO-0"), ("pipeline", "pipeline stage vs whole model")):
        mine = [r for r in results if r["layout"] == layout]
        if not mine:
            continue
        ratio = max(r["peak"] / zero0[r["rank"]]["peak"] for r in mine)
        ok &= ratio <= TARGET
        grown = max((r["peak"] - r["rss_before"]) / (zero0[r["rank"]]["peak"]
                                                      - zero0[r["rank"]]["rss_before"])
                    for r in mine)
        print(f"{label}: peak RSS ratio {ratio:.2f} (target <= {TARGET}) "
              f"{'ok' if ratio <= TARGET else 'OVER'}; above the RSS before construction "
              f"(Python, torch, DeepSpeed): {grown:.2f}")
    print(f"plan build/rank within {PLAN_TOLERANCE:.0%} of the measured construction: "
          f"{'ok' if agree_ok else 'NO'}")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--only", nargs="*", help="these layouts (zero0 always runs: the baseline)")
    p.add_argument("--json", type=Path, help="also write every rank's figures here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, Path(args.worker_out), args.precision)
        return
    layouts = ["zero0"] + [n for n in LAYOUTS if n != "zero0" and (not args.only or n in args.only)]
    results = launch_all(layouts, args.precision)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    sys.exit(0 if report(results, args.precision) else 1)


if __name__ == "__main__":
    main()
