"""Compiler-core benchmarks, each a ratio against a reference measured in the same run.

1. Forward+backward time of nnspec-built resnet18 and gpt2_small over the reference models
   (torchvision's resnet18, transformers' GPT2LMHeadModel) on the CPU, small batch.
   Target <= 1.03: the built module is plain PyTorch code with no interpretive layer.
2. `check` time (parse, resolve, check, summary) of generated models of 10, 100 and 1,000
   block instances with varying widths.
   Target: linear growth (time per block roughly constant) and under 1 s at 1,000 blocks.

Run: .venv/bin/python bench/bench_core.py [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
# the generated model of bench_check.py: n block instances, each with its own arguments
from bench_check import instances as generated_spec  # noqa: E402


def step_time(model, make_batch, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        inputs = make_batch()
        t0 = time.perf_counter()
        out = model(*inputs)
        loss = (out[0] if isinstance(out, tuple) else out).float().mean()
        loss.backward()
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return times


def interleaved(ours, ref, make_batch, rounds: int, per_round: int) -> tuple[float, float]:
    """Median step times, alternating the two models so drift in machine load hits both."""
    step_time(ours, make_batch, 2), step_time(ref, make_batch, 2)  # warm-up
    a, b = [], []
    for _ in range(rounds):
        a += step_time(ours, make_batch, per_round)
        b += step_time(ref, make_batch, per_round)
    return statistics.median(a), statistics.median(b)


def bench_resnet18(rounds: int) -> tuple[str, float, float]:
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).train()
    ours = nnspec.load(ROOT / "specs/resnet18.nn").build().train()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 224, 224)
    a, b = interleaved(ours, ref, lambda: (x,), rounds, 3)
    return "resnet18 fwd+bwd (batch 4, 224px)", a, b


def bench_gpt2(rounds: int) -> tuple[str, float, float]:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    ref = transformers.GPT2LMHeadModel(cfg).train()
    ours = nnspec.load(ROOT / "specs/gpt2_small.nn", dropout_p=0.0).build().train()
    ids = torch.randint(0, cfg.vocab_size, (1, 64))
    ref_call = lambda x: ref(x).logits  # noqa: E731
    ref_call.zero_grad = ref.zero_grad  # type: ignore[attr-defined]
    a, b = interleaved(ours, ref_call, lambda: (ids,), rounds, 3)
    return "gpt2_small fwd+bwd (batch 1, 64 tokens)", a, b


def bench_check(sizes) -> list[tuple[int, float]]:
    out = []
    for n in sizes:
        text = generated_spec(n)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            spec = nnspec.loads(text, name=f"deep{n}.nn")
            spec.summary()
            times.append(time.perf_counter() - t0)
        out.append((n, min(times)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rounds = 2 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model step':44} {'nnspec ms':>10} {'reference ms':>13} {'ratio':>7}  target")
    for bench in (bench_resnet18, bench_gpt2):
        name, a, b = bench(rounds)
        print(f"{name:44} {a * 1e3:10.1f} {b * 1e3:13.1f} {a / b:7.3f}  <= 1.03")
    print()
    print(f"{'check (parse+resolve+check+summary)':44} {'seconds':>10} {'per block ms':>13} {'vs 10':>7}")
    results = bench_check([10, 100, 1000])
    base = results[0][1] / results[0][0]
    for n, t in results:
        print(f"{f'{n} blocks':44} {t:10.3f} {t / n * 1e3:13.3f} {t / n / base:7.2f}")
    n, t = results[-1]
    print(f"\n1,000 blocks in {t:.3f} s (target < 1 s); growth 10 -> 1,000 blocks: "
          f"{results[-1][1] / results[0][1]:.0f}x for 100x the blocks")


if __name__ == "__main__":
    main()
