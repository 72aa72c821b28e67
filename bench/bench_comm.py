"""Gradient communication of engine ddp, side by side: bytes and all-reduce calls per step (counted
at torch's hooks and averager, nnspec/train/comm_count.py), step time and final test accuracy of
DDP's plain all-reduce (the reference, measured in the same launch), the fp16 and bf16 compress
hooks, PowerSGD rank 4 and post-local SGD every 8 steps, with 2 ranks under the `deepspeed`
runner (CPU, gloo). Two models: digits_mlp (17k parameters, where communication is small) and a
3.2M-parameter MLP (four 1024-wide layers), where it matters. One launch per model runs every
setting in turn (tests/train/several_runs.py). Expected: PowerSGD >= 8x fewer bytes per step,
fp16/bf16 2x, local SGD 8x fewer calls, accuracy within about 1 point of the reference.

Bytes and calls per step are counted after each setting's warm-up (PowerSGD's 10 plain steps);
step time is rank 0's median time in train_step (forward, backward with its all-reduces,
update). The reference runs first and again last: the two show how much the load of a shared
machine moved the times in between.

Run: .venv/bin/python bench/bench_comm.py [--steps-digits 480] [--steps-wide 240]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEEPSPEED = Path(sys.executable).parent / "deepspeed"

WIDE = """model wide_mlp(num_classes = 10, hidden = 1024) {
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
  fc5: linear(num_classes)
}
"""
SETTINGS = {
    "allreduce (reference)": {"engine": "ddp"},
    "fp16": {"engine": "ddp", "comm_hook": {"name": "fp16"}},
    "bf16": {"engine": "ddp", "comm_hook": {"name": "bf16"}},
    "powersgd(rank=4)": {"engine": "ddp", "comm_hook": {"name": "powersgd",
                                                        "kwargs": {"rank": 4, "warmup": 10}}},
    "local_sgd every(8)": {"engine": "ddp", "local_sgd": {"name": "every", "args": [8]}},
    # the reference again, last: how much the machine's load moved the step times meanwhile
    "allreduce (again)": {"engine": "ddp"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: Path, steps: int, lr: float, out: Path) -> dict[str, dict]:
    """Every setting trained on `spec` by the same two ranks; {setting: final.json}."""
    train = {"steps": steps, "batch_size": 64, "seed": 0,
             "optimizer": {"name": "adamw", "kwargs": {"lr": lr, "weight_decay": 1e-4}},
             "schedule": {"name": "warmup_cosine", "kwargs": {"warmup": 20}}}
    names = {f"run{i}": name for i, name in enumerate(SETTINGS)}
    runs = {key: [train, SETTINGS[name]] for key, name in names.items()}
    (out / "runs.json").write_text(json.dumps(runs))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(DEEPSPEED), "--num_accelerators", "2", "--master_port", str(free_port()),
           "--module", "tests.train.several_runs", str(spec), str(out), str(out / "runs.json")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"the launch failed:\n{(r.stdout + r.stderr)[-4000:]}")
    return {name: json.loads((out / key / "final.json").read_text())
            for key, name in names.items()}


def table(title: str, results: dict[str, dict]) -> str:
    ref = results["allreduce (reference)"]
    rows = [title, f"{'setting':<22} {'bytes/step':>11} {'x fewer':>8} {'calls/step':>10} "
            f"{'x fewer':>8} {'ms/step':>8} {'x ref':>6} {'accuracy':>9}"]
    for name, r in results.items():
        c, rc = r["comm"], ref["comm"]
        rows.append(f"{name:<22} {c['bytes_per_step']:>11,.0f} "
                    f"{rc['bytes_per_step'] / c['bytes_per_step']:>8.2f} "
                    f"{c['calls_per_step']:>10.3f} "
                    f"{rc['calls_per_step'] / c['calls_per_step']:>8.2f} "
                    f"{c['seconds_per_step'] * 1e3:>8.2f} "
                    f"{c['seconds_per_step'] / rc['seconds_per_step']:>6.2f} "
                    f"{r['accuracy']:>9.4f}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-digits", type=int, default=480)
    p.add_argument("--steps-wide", type=int, default=240)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "digits").mkdir()
        (tmp / "wide").mkdir()
        wide = tmp / "wide_mlp.nn"
        wide.write_text(WIDE)
        digits = launch(ROOT / "specs/digits_mlp.nn", args.steps_digits, 3e-3, tmp / "digits")
        print(table(f"digits_mlp (17,226 parameters), {args.steps_digits} steps, 2 ranks",
                    digits), flush=True)
        print()
        big = launch(wide, args.steps_wide, 1e-3, tmp / "wide")
        print(table(f"wide_mlp (3,225,610 parameters), {args.steps_wide} steps, 2 ranks", big))


if __name__ == "__main__":
    main()
