"""Training benchmarks, each side by side with a reference measured in the same run.

1. Step time: the nnspec-built model trained by nnspec's one-process machinery (the loop's batch
   plan and data split, `LocalBackend.train_step` with the spec's objective) over the same model
   written by hand in plain PyTorch (nn.Sequential, torch.optim.AdamW, F.cross_entropy), same
   weights, batches, optimizer and threads; median of N steps after warm-up, the two alternated
   so drift in machine load hits both. lenet5 (digits, batch 64) and a 8.5M-parameter MLP.
   Target <= 1.05.
2. Memory per rank with ZeRO 0/1/2/3 over 2 ranks under the real `deepspeed` runner (one
   launch per stage), for the 8.5M-parameter MLP with AdamW in fp32: the model-state bytes each
   rank holds (unique tensor storages reachable from the module's parameters, their gradients
   and ZeRO partitions, and the DeepSpeed optimizer: master weights, Adam moments, gradient
   partitions), measured after backward and after the step of the last step; and peak RSS
   (resource.getrusage). Expected: ZeRO-3 approaches half of ZeRO-0's model states (16 bytes per
   parameter unsharded: weights, gradients, two Adam moments).

Run: .venv/bin/python bench/bench_train.py [--quick] [--skip-memory] [--skip-steps]
(bench/bench_plan.py compares nnspec's memory *plan* with measured model-state memory.)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
from nnspec.lang.config import Call, ParallelSpec, TrainSpec  # noqa: E402

WIDE = """model wide_mlp(num_classes = 10, hidden = 2048) {
  input x: float[1, 8, 8]
  flatten
  fc1: linear(hidden)
  relu
  fc2: linear(hidden)
  relu
  fc3: linear(hidden)
  relu
  fc4: linear(num_classes)
}
"""
LR = 1e-3


def hand_written(name: str) -> torch.nn.Module:
    """The same networks in plain PyTorch, as one would write them without nnspec."""
    nn = torch.nn
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64, 120), nn.ReLU(), nn.Linear(120, 84),
                             nn.ReLU(), nn.Linear(84, 10))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048),
                         nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


def load_spec(name: str):
    return nnspec.load(ROOT / "specs/lenet5.nn") if name == "lenet5" else nnspec.loads(WIDE)


# ---- 1. step time --------------------------------------------------------------------------------

class NnspecSteps:
    """Steps as nnspec's one-process loop takes them: plan -> Split.take -> LocalBackend."""

    def __init__(self, spec, data, batch: int):
        from nnspec.train.local import LocalBackend
        from nnspec.train.batches import BatchPlan
        from nnspec.train.metrics import build_objective

        self.train = TrainSpec(steps=10_000, batch_size=batch,
                               optimizer=Call(name="adamw", kwargs={"lr": LR}))
        self.backend = LocalBackend(spec.build(), self.train, "fp32", None)
        self.objective = build_objective(self.train)
        self.plan = BatchPlan(len(data.train), batch, batch, 1, 1, 0, 0)
        self.data, self.step, self.order = data, 0, self.plan.order(0)

    @property
    def model(self) -> torch.nn.Module:
        return self.backend.model

    def __call__(self) -> float:
        t0 = time.perf_counter()
        micro = [self.data.train.take(i) for i in self.plan.micro_batches(self.step, self.order)]
        self.backend.train_step(micro, self.objective)
        self.step += 1
        return time.perf_counter() - t0


class HandSteps:
    """The plain PyTorch loop: index the tensors, forward, cross entropy, backward, AdamW."""

    def __init__(self, model: torch.nn.Module, data, batch: int, plan):
        self.model, self.data, self.plan = model, data, plan
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        self.x, self.y = data.train.inputs[0], data.train.targets
        self.step, self.order = 0, plan.order(0)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        idx = self.order[(self.step % self.plan.steps_per_epoch) * self.plan.batch:][
            :self.plan.batch]
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
        loss.backward()
        self.optimizer.step()
        loss.item()
        self.step += 1
        return time.perf_counter() - t0


def bench_step(name: str, batch: int, rounds: int, per_round: int) -> tuple[str, float, float]:
    from nnspec.train.data import load_data

    spec = load_spec(name)
    data = load_data(Call(name="digits"), spec.summary(), split=0.8, seed=0, target="class")
    torch.manual_seed(0)
    ours = NnspecSteps(spec, data, batch)
    ref_model = hand_written(name)
    ref_model.load_state_dict(dict(zip(ref_model.state_dict(), ours.model.state_dict().values())))
    ref = HandSteps(ref_model, data, batch, ours.plan)
    for _ in range(5):  # warm-up
        ours(), ref()
    a, b = [], []
    for _ in range(rounds):
        a += [ours() for _ in range(per_round)]
        b += [ref() for _ in range(per_round)]
    params = sum(p.numel() for p in ref_model.parameters())
    return f"{name} train step ({params / 1e6:.2f}M params, batch {batch})", \
        statistics.median(a), statistics.median(b)


# ---- 2. memory per rank under the runner ---------------------------------------------------------

def model_state_bytes(engine) -> dict[str, int]:
    """Bytes of the model states a rank holds, by kind: the module's weights (its ZeRO-3
    partitions), gradients (on the weights, or ZeRO's gradient partitions), and the optimizer's
    master weights and Adam moments. Each tensor storage counts once (ZeRO keeps weights and
    gradients as views into flat buffers); communication buckets are not model states."""
    seen: set[int] = set()
    sizes = {"params": 0, "grads": 0, "optimizer": 0}

    def add(kind: str, t) -> None:
        if isinstance(t, (list, tuple)):
            for item in t:
                add(kind, item)
        elif isinstance(t, dict):
            add(kind, list(t.values()))
        elif isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            if storage.nbytes() and storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                sizes[kind] += storage.nbytes()

    zero = engine.optimizer
    base = getattr(zero, "optimizer", zero)  # the torch optimizer under a ZeRO wrapper
    for p in engine.module.parameters():
        add("params", p.ds_tensor if hasattr(p, "ds_tensor") else p.data)
        add("grads", p.grad)
    for name in ("averaged_gradients", "grads_in_partition", "grad_partitions_flat_buffer"):
        add("grads", getattr(zero, name, None))
    for group in base.param_groups:
        for p in group["params"]:
            add("grads", p.grad)
            add("optimizer", p)  # fp32 masters; under ZeRO-0 the module's own, counted above
    for state in base.state.values():
        add("optimizer", state)
    return sizes


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_worker(zero: int, out: Path, steps: int = 4, batch: int = 64) -> None:
    """One rank of a launch: train the wide MLP a few steps with DeepSpeed, record its memory."""
    from nnspec.emit.deepspeed import emit_deepspeed_config
    from nnspec.train import distributed
    from nnspec.train.metrics import build_objective

    torch.set_num_threads(1)
    distributed.init_process_group()
    rank, world = distributed.rank(), distributed.world_size()
    train = TrainSpec(steps=steps, batch_size=batch,
                      optimizer=Call(name="adamw", kwargs={"lr": LR}))
    parallel = ParallelSpec(zero=zero)
    config = emit_deepspeed_config(train, parallel, world, total_steps=steps,
                                   steps_per_print=1 << 30)
    before = rss_mb()
    spec = nnspec.loads(WIDE)
    torch.manual_seed(0)
    backend = distributed.DeepSpeedBackend(spec.build(), train, config)
    objective = build_objective(train)
    params = sum(int(getattr(p, "ds_numel", p.numel())) for p in backend.engine.module.parameters())
    x = torch.randn(batch // world, 1, 8, 8)
    y = torch.randint(0, 10, (batch // world,))
    held = {"params": 0, "grads": 0, "optimizer": 0}
    for _ in range(steps):  # the most held at once: after backward, or after the step
        loss = objective.loss(backend.forward([x]), y)
        backend.engine.backward(loss)
        held = max(held, model_state_bytes(backend.engine), key=lambda h: sum(h.values()))
        backend.engine.step()
        held = max(held, model_state_bytes(backend.engine), key=lambda h: sum(h.values()))
    result = {"zero": zero, "rank": rank, "params": params, "held": held,
              "model_state_bytes": sum(held.values()),
              "peak_rss_mb": rss_mb(), "rss_before_model_mb": before}
    (out / f"zero{zero}-rank{rank}.json").write_text(json.dumps(result))
    backend.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_memory(stages=(0, 1, 2, 3)) -> list[dict]:
    deepspeed = Path(sys.executable).parent / "deepspeed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for zero in stages:
            cmd = [str(deepspeed), "--num_accelerators", "2", "--master_port", str(free_port()),
                   str(Path(__file__).resolve()), "--worker-zero", str(zero), "--worker-out", tmp]
            t0 = time.time()
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=900)
            if r.returncode != 0:
                sys.exit(f"ZeRO-{zero} launch failed:\n{(r.stdout + r.stderr)[-4000:]}")
            print(f"  ZeRO-{zero} launch: {time.time() - t0:.0f} s", file=sys.stderr)
            for rank in (0, 1):
                results.append(json.loads((Path(tmp) / f"zero{zero}-rank{rank}.json").read_text()))
    return results


def print_memory(results: list[dict]) -> None:
    base = {r["rank"]: r for r in results if r["zero"] == 0}
    params = results[0]["params"]
    print(f"\nMemory per rank, 2 ranks under the deepspeed runner, {params / 1e6:.2f}M-parameter "
          "MLP, AdamW fp32")
    print(f"{'stage':<8}{'rank':>5}{'model states MB':>17}{'bytes/param':>13}"
          f"{'(w + g + opt)':>17}{'vs ZeRO-0':>11}{'peak RSS MB':>13}{'vs ZeRO-0':>11}")
    for r in results:
        b = base[r["rank"]]
        parts = " + ".join(f"{r['held'][k] / params:.1f}" for k in ("params", "grads", "optimizer"))
        print(f"ZeRO-{r['zero']:<3}{r['rank']:>5}{r['model_state_bytes'] / 2**20:>17.1f}"
              f"{r['model_state_bytes'] / params:>13.1f}{parts:>17}"
              f"{r['model_state_bytes'] / b['model_state_bytes']:>11.2f}"
              f"{r['peak_rss_mb']:>13.0f}{r['peak_rss_mb'] / b['peak_rss_mb']:>11.2f}")
    z3 = [r["model_state_bytes"] / base[r["rank"]]["model_state_bytes"]
          for r in results if r["zero"] == 3]
    if z3:
        print(f"ZeRO-3 holds {max(z3):.2f} of ZeRO-0's model-state memory per rank "
              "(ideal with 2 ranks: 0.50)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--skip-memory", action="store_true", help="no runner launches")
    p.add_argument("--skip-steps", action="store_true", help="only the memory launches")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker-zero", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker_zero is not None:
        memory_worker(args.worker_zero, Path(args.worker_out))
        return
    torch.set_num_threads(args.threads)
    if not args.skip_steps:
        print_steps(args)
    if not args.skip_memory:
        print_memory(bench_memory())


def print_steps(args) -> None:
    rounds, per_round = (4, 10) if args.quick else (10, 20)
    rows = [bench_step("lenet5", 64, rounds, per_round),
            bench_step("wide_mlp", 64, rounds, max(per_round // 2, 5))]
    print(f"Step time, one process, {args.threads} thread(s), median of "
          f"{rounds * per_round} steps (wide_mlp: {rounds * max(per_round // 2, 5)})")
    print(f"{'benchmark':<48}{'nnspec ms':>11}{'plain ms':>10}{'ratio':>8}  target")
    for label, ours, ref in rows:
        ratio = ours / ref
        print(f"{label:<48}{ours * 1e3:>11.3f}{ref * 1e3:>10.3f}{ratio:>8.3f}  <= 1.05 "
              f"{'ok' if ratio <= 1.05 else 'OVER'}")


if __name__ == "__main__":
    main()
