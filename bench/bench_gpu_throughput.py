"""gpt2_small training throughput on one GPU: `nnspec train` against a hand-written loop.

Four figures in tokens/s, bf16 autocast over fp32 weights, the same model (specs/gpt2_small.nn),
batch, sequence length, optimizer and random tokens:

  nnspec train         the real loop, one process (nnspec.train.run, what `nnspec train` calls):
                       batch plan, LocalBackend.train_step, the lm objective, metrics rows
  nnspec train compile the same with the train setting `compile = true`
  hand-written         spec.build() + torch.optim.AdamW + torch.autocast(bf16) +
                       F.cross_entropy, as one would write it without nnspec
  hand-written compile the same with `torch.compile(model)`

Each runs `--warmup` steps (the compiled ones compile there), then `--steps` timed steps between
two torch.cuda.synchronize() calls. Printed: the four figures, nnspec/hand for eager and for
compiled (target >= 0.97), and the model FLOPs utilisation, 6 x parameters x tokens/s over the
device's peak dense bf16 FLOP/s (PEAK_BF16 below, matched on torch.cuda.get_device_name();
another device needs --peak-flops).

Run on one GPU, headless; sized to finish in under 5 minutes on an H100, the two compiles taking
most of it (not yet run on a GPU: this project's sessions had none):
    .venv/bin/python bench/bench_gpu_throughput.py [--batch 16] [--seq 1024] [--warmup 5]
        [--steps 20] [--peak-flops 989e12] [--json FILE]
Without CUDA it stops with exit 2. `--device cpu --steps 2 --tiny` is the smoke test
(tests/bench/test_bench_gpu_throughput.py): a 2-layer gpt2_small on the CPU, figures meaningless.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "gpt2_small.nn"
# dense bf16 tensor-core peak (no sparsity) from NVIDIA's data sheets, by a part of the name
# torch.cuda.get_device_name() gives ("NVIDIA H100 80GB HBM3" is the SXM part)
PEAK_BF16 = (("H200", 989e12), ("H100 80GB HBM3", 989e12), ("H100 SXM", 989e12),
             ("A100", 312e12))
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 256, "n_positions": 64}
LR, WEIGHT_DECAY = 6e-4, 0.1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (the measurement) or cpu (a smoke test of the script)")
    p.add_argument("--batch", type=int, help="sequences per step (default 16; --tiny 4)")
    p.add_argument("--seq", type=int, help="tokens per sequence (default 1024; --tiny 32)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiles there)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--peak-flops", type=float, help="the device's peak bf16 FLOP/s, for devices "
                   "the table does not know")
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide gpt2_small (smoke test)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    args.batch = args.batch or (4 if args.tiny else 16)
    args.seq = args.seq or (32 if args.tiny else 1024)
    for flag in ("batch", "seq", "warmup", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    return args


def fail(message: str) -> None:
    print(f"bench_gpu_throughput: error: {message}", file=sys.stderr)
    sys.exit(2)


def peak_flops(torch, args) -> float | None:
    """The device's peak bf16 FLOP/s: --peak-flops, else the table; None on the CPU."""
    if args.peak_flops:
        return args.peak_flops
    if args.device == "cpu":
        return None
    name = torch.cuda.get_device_name()
    for part, peak in PEAK_BF16:
        if part in name:
            return peak
    fail(f"no peak bf16 FLOP/s known for {name!r}: pass --peak-flops (the data sheet's dense "
         "bf16 figure, e.g. 756e12 for an H100 PCIe)")


class Clock:
    """Wall time between the end of the warm-up and the end of the timed steps, the device
    synchronized at both ends (and nowhere else, so the loop runs as it would)."""

    def __init__(self, torch, device: str, warmup: int, steps: int):
        self.torch, self.device = torch, device
        self.warmup, self.last = warmup, warmup + steps
        self.step, self.start, self.seconds = 0, None, None

    def tick(self) -> None:
        self.step += 1
        if self.step in (self.warmup, self.last):
            if self.device == "cuda":
                self.torch.cuda.synchronize()
            now = time.perf_counter()
            if self.step == self.warmup:
                self.start = now
            else:
                self.seconds = now - self.start


def load_spec(args):
    import nnspec
    return nnspec.load(SPEC, seq=args.seq, **(TINY if args.tiny else {}))


def nnspec_loop(args, compile: bool) -> float:
    """Seconds of the timed steps of `nnspec.train.run` (stopped right after them)."""
    from nnspec.lang.config import Call, ParallelSpec, TrainSpec
    from nnspec.train import local, run
    import torch

    total = args.warmup + args.steps
    train = TrainSpec(data=Call(name="synthetic", kwargs={"size": 2 * total * args.batch}),
                      split=0.5, steps=total, batch_size=args.batch, loss=Call(name="lm"),
                      metrics=("loss",), compile=compile,
                      optimizer=Call(name="adamw", kwargs={"lr": LR, "weight_decay": WEIGHT_DECAY}))
    clock = Clock(torch, args.device, args.warmup, args.steps)
    step = local.LocalBackend.train_step

    def timed(self, micro, objective):
        loss = step(self, micro, objective)
        clock.tick()
        return loss

    local.LocalBackend.train_step = timed
    try:
        with tempfile.TemporaryDirectory() as out:
            # stop_at: no final evaluation (under compile a no-grad graph to compile) nor
            # weights file; the stop's checkpoint is written after the timed steps
            run(load_spec(args), train, ParallelSpec(precision="bf16"), out, progress=False,
                stop_at=total)
    finally:
        local.LocalBackend.train_step = step
    return clock.seconds


def hand_loop(args, compile: bool) -> float:
    """Seconds of the timed steps of a plain PyTorch loop over the same model."""
    import torch
    import torch.nn.functional as F

    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = load_spec(args)
    vocab = spec.summary()["outputs"][0]["shape"][-1]
    model = spec.build().to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    if compile:
        model = torch.compile(model)
    tokens = torch.randint(0, vocab, (args.warmup + args.steps, args.batch, args.seq + 1))
    if device.type == "cuda":
        tokens = tokens.pin_memory()
    clock = Clock(torch, args.device, args.warmup, args.steps)
    for batch in tokens:
        batch = batch.to(device, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.tick()
    return clock.seconds


def release(torch) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":  # nnspec's one-process loop takes the GPU whenever it sees one
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device: this bench measures GPU throughput (run it on a GPU machine, or "
             "pass --device cpu --tiny for a smoke test of the script)")
    peak = peak_flops(torch, args)
    from nnspec.lang.diagnostics import SpecError
    try:
        spec = load_spec(args)
    except SpecError as err:  # --seq longer than the model's positions, say
        fail(f"specs/gpt2_small.nn does not take these settings:\n{err}")
    params = sum(p.numel() for p in spec.build(device="meta").parameters())
    tokens = args.batch * args.seq * args.steps
    figures = {}
    for name, measure, compile in (("nnspec train", nnspec_loop, False),
                                   ("hand-written", hand_loop, False),
                                   ("nnspec train compile", nnspec_loop, True),
                                   ("hand-written compile", hand_loop, True)):
        with contextlib.redirect_stdout(sys.stderr):  # the loop's own messages
            seconds = measure(args, compile)
        figures[name] = tokens / seconds
        release(torch)
        print(f"{name:22s} {figures[name]:12,.0f} tokens/s" + (
            f"   MFU {6 * params * figures[name] / peak:6.1%}" if peak else ""), flush=True)
    ratios = {"eager": figures["nnspec train"] / figures["hand-written"],
              "compile": figures["nnspec train compile"] / figures["hand-written compile"]}
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"nnspec/hand: eager {ratios['eager']:.3f}, compile {ratios['compile']:.3f} "
          "(target >= 0.97)")
    print(f"{device}, torch {torch.__version__}, {params:,} parameters, batch {args.batch} x "
          f"seq {args.seq}, bf16, {args.steps} timed steps after {args.warmup}, "
          f"{time.strftime('%Y-%m-%d')}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "tokens_per_s": figures, "ratio": ratios, "device": device, "parameters": params,
            "peak_flops": peak, "batch": args.batch, "seq": args.seq, "steps": args.steps,
            "warmup": args.warmup, "torch": torch.__version__,
            "mfu": {k: 6 * params * v / peak for k, v in figures.items()} if peak else None},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
