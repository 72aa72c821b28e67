"""Measured model-state memory per rank against `nnspec plan`'s figure, under ZeRO 0-3.

Runs the real `deepspeed --num_accelerators 2` runner on the CPU (gloo) once. Each rank trains a
spec of about 9.5 million parameters (16 linear layers of 768) for two steps under every ZeRO stage
in fp32 and in bf16 (AdamW, torch_adam), one engine after another, and rank 0 prints, per
configuration, the model-state bytes the plan predicts for one rank beside the bytes measured.

What "measured" counts: every tensor storage alive in the rank's process during the second
optimizer step (taken inside the optimizer's `step`, when the fp32 gradient partition exists and
the Adam moments from the first step are there; also when ZeRO-1 starts reducing the full
gradients, and when ZeRO-1/2 hold both the reduced gradient partition and its fp32 copy, keeping
the largest), deduplicated by storage, minus the storages that
were alive before the model was built (the data), minus DeepSpeed's communication buffers: the
storages reachable from optimizer attributes named *ipg* / *bucket* / *pin_buffer* and, at ZeRO-3,
its 16-bit gradient partition (`grad_partitions_flat_buffer`) -- the plan counts those under
`buffers`, as DeepSpeed's own estimators leave them out of the model states. The plan's ZeRO-3
figure also holds the largest layer gathered (c bytes of weights and c of gradients), which is not
gathered during the step; the bench reports that share.

    .venv/bin/python bench/bench_plan.py            # launches the runner, prints the table
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """
model plan_bench(width = 768, depth = 16) {
  input x: float[width]
  body: [linear(width), relu] * depth
  head: linear(10)
}

train {
  data = synthetic(size=64)
  batch_size = 8
  steps = 2
  optimizer = adamw(lr=1e-3)
}
"""
CONFIGS = [(zero, precision) for precision in ("fp32", "bf16") for zero in (0, 1, 2, 3)]
BUFFER_NAMES = ("ipg", "bucket", "pin_buffer", "grad_partitions_flat_buffer")


def storages(objs=None) -> dict[int, int]:
    """data_ptr -> nbytes of the storages of every live tensor (or of `objs`)."""
    import torch

    out = {}
    for obj in gc.get_objects() if objs is None else objs:
        try:
            if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
                st = obj.untyped_storage()
                if st.nbytes():
                    out[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001  (half-initialized objects during gc walks)
            continue
    return out


def buffer_storages(optimizer) -> dict[int, int]:
    """Storages reachable from the optimizer's attributes that are communication buffers."""
    import torch

    found = []

    def walk(value, depth):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif depth < 3 and isinstance(value, (list, tuple)):
            for v in value:
                walk(v, depth + 1)
        elif depth < 3 and isinstance(value, dict):
            for v in value.values():
                walk(v, depth + 1)
        elif depth < 3 and hasattr(value, "__dict__") and not isinstance(value, type):
            for v in vars(value).values():
                walk(v, depth + 1)

    for name, value in vars(optimizer).items():
        if any(b in name for b in BUFFER_NAMES):
            walk(value, 0)
    return storages(found)


def worker(configs: list[tuple[int, str]]) -> None:
    import deepspeed
    import torch

    import nnspec
    from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    results = []
    for zero, precision in configs:
        spec = nnspec.loads(SPEC, name="plan_bench.nn", sets={"parallel.zero": zero,
                                                              "parallel.precision": precision,
                                                              "parallel.data_parallel": world})
        plan = evaluate(Model(spec.ir, spec.settings.train, spec.settings.parallel),
                        Choice(zero, "none", "none", 1, 4, 1, ()), Cluster(world),
                        load_profile("cpu"))
        torch.manual_seed(0)
        x, y = torch.randn(4, 768), torch.randint(0, 10, (4,))
        gc.collect()
        before = storages()
        module = spec.build()
        engine, optimizer, _, _ = deepspeed.initialize(model=module,
                                                       model_parameters=module.parameters(),
                                                       config=spec.deepspeed_config(world))
        basic, zero_opt = engine.basic_optimizer, engine.optimizer
        seen = {"states": 0, "buffers": 0}

        def census() -> None:
            if engine.global_steps != 1:  # the second step: Adam's moments exist
                return
            gc.collect()
            live, buffers = storages(), buffer_storages(zero_opt)
            states = sum(n for p, n in live.items() if p not in before and p not in buffers)
            if states > seen["states"]:
                seen["states"] = states
                seen["buffers"] = sum(n for p, n in buffers.items() if p not in before)

        patched = []
        for owner, name in ((basic, "step"), (zero_opt, "reduce_gradients"),
                            (zero_opt, "free_grad_in_param_list")):
            if owner is not None and callable(getattr(owner, name, None)):
                patched.append((owner, name, probe(getattr(owner, name), census)))
                setattr(owner, name, patched[-1][2])
        t0 = time.perf_counter()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for _ in range(2):
            out = engine(x.to(dtype))
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            engine.backward(loss)
            engine.step()
        gpu = plan["per_gpu_bytes"]
        c = 2 if precision == "bf16" else 4
        gathered = 2 * c * plan_largest(spec) if zero == 3 else 0
        results.append({"zero": zero, "precision": precision, "rank": rank,
                        "plan": gpu["params"] + gpu["grads"] + gpu["optimizer"],
                        "plan_gathered": gathered, "measured": seen.get("states", 0),
                        "measured_buffers": seen.get("buffers", 0),
                        "params": spec.summary()["params"],
                        "seconds": round(time.perf_counter() - t0, 1)})
        for owner, name, _ in patched:
            delattr(owner, name)
        del engine, optimizer, basic, zero_opt, module, patched
        gc.collect()
        deepspeed.comm.barrier()
    if rank == 0:
        print("BENCH " + json.dumps(results))
    deepspeed.comm.barrier()
    torch.distributed.destroy_process_group()


def probe(method, census):
    """`method`, taking a census of live storages before it runs."""
    def wrapped(*a, **k):
        census()
        return method(*a, **k)
    return wrapped


def plan_largest(spec) -> int:
    from nnspec.plan.costs import model_costs

    return model_costs(spec.ir).largest_layer


def launch(configs: list[tuple[int, str]] = CONFIGS) -> list[dict]:
    """Run the runner once over `configs` ((zero, precision) pairs); rank 0's results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = Path(sys.executable).parent / "deepspeed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [str(runner), "--num_accelerators", "2", "--master_port", str(port),
           str(Path(__file__).resolve()), "--worker", "--configs",
           ",".join(f"{z}:{p}" for z, p in configs)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    lines = [line for line in out.splitlines() if "BENCH " in line]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"the runner failed (exit {r.returncode}):\n{out[-4000:]}")
    return json.loads(lines[-1].split("BENCH ", 1)[1])


def table(results: list[dict]) -> str:
    head = ("zero", "precision", "plan MiB", "measured MiB", "ratio", "plan gathered MiB",
            "buffers MiB", "run s")
    rows = [(str(r["zero"]), r["precision"], f"{r['plan'] / 2**20:.1f}",
             f"{r['measured'] / 2**20:.1f}", f"{r['measured'] / r['plan']:.3f}",
             f"{r['plan_gathered'] / 2**20:.1f}", f"{r['measured_buffers'] / 2**20:.1f}",
             f"{r['seconds']:.1f}")
            for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = lambda row: "  ".join(c.rjust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(head), *map(fmt, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--configs", default=",".join(f"{z}:{p}" for z, p in CONFIGS),
                        help="ZERO:PRECISION pairs, e.g. 2:bf16,3:fp32 (default: all eight)")
    args = parser.parse_args()
    configs = [(int(z), p) for z, p in (c.split(":") for c in args.configs.split(","))]
    if args.worker:
        worker(configs)
        return
    start = time.perf_counter()
    results = launch(configs)
    print(f"model states per rank, 2 DeepSpeed processes on the CPU, "
          f"{results[0]['params']:,} parameters, AdamW")
    print(table(results))
    worst = max(abs(r["measured"] / r["plan"] - 1) for r in results)
    print(f"largest deviation {worst:.1%}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
