"""Compression benchmark: the five shipped compress specs, run as `nnspec compress` runs them, each
criterion of the compress issue read from its report and set against its target.

1. specs/digits_pruned.nn     unstructured magnitude pruning to 90%, fine-tuned: drop <= 1 point
2. specs/digits_channels.nn   50% of the conv channels, structurally: >= 1.6x faster, drop <= 2
3. specs/digits_int8.nn       dynamic int8 on a linear-heavy MLP: >= 2.5x faster, >= 3.5x smaller,
                              drop <= 1 point, outputs within 2% (relative L2)
4. specs/digits_static_int8.nn  static int8 CNN: faster than fp32, drop <= 1 point
5. specs/digits_distill.nn    student <= 1/4 of the teacher's parameters, trained on 10% of the
                              labels plus the teacher-labelled rest: >= 2 points above the same
                              student alone on the same labels, and >= 97% of the teacher's
                              accuracy (means over 5 seeds)

Latency: batch 64, one thread (the spec's `threads`), median of repeated forwards, before and
after alternated in the same process. Everything trains from scratch (the teacher too) in a
temporary folder; nothing is downloaded.

Run: .venv/bin/python bench/bench_compress.py [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
from nnspec.compress.command import compress  # noqa: E402


def _drop(r):
    return round(100 * (r["before"]["accuracy"] - r["after"]["accuracy"]), 2)


def criteria(name: str, r: dict) -> list[tuple[str, str, float, bool]]:
    """(criterion, target, measured, met) rows for one report."""
    if name == "digits_pruned":
        return [("sparsity", ">= 0.90", r["sparsity"], r["sparsity"] >= 0.899),
                ("accuracy drop (points)", "<= 1", _drop(r), _drop(r) <= 1)]
    if name == "digits_channels":
        return [("speedup", ">= 1.6x", r["speedup"], r["speedup"] >= 1.6),
                ("params ratio", "(report)", round(r["before"]["params"] / r["after"]["params"], 2),
                 True),
                ("accuracy drop (points)", "<= 2", _drop(r), _drop(r) <= 2)]
    if name == "digits_int8":
        return [("speedup", ">= 2.5x", r["speedup"], r["speedup"] >= 2.5),
                ("size ratio", ">= 3.5x", r["size_ratio"], r["size_ratio"] >= 3.5),
                ("accuracy drop (points)", "<= 1", _drop(r), _drop(r) <= 1),
                ("output rel. L2 error", "< 0.02", r["outputs"]["rel_error"],
                 r["outputs"]["rel_error"] < 0.02)]
    if name == "digits_static_int8":
        return [("speedup", "> 1x", r["speedup"], r["speedup"] > 1),
                ("size ratio", "(report)", r["size_ratio"], True),
                ("accuracy drop (points)", "<= 1", _drop(r), _drop(r) <= 1)]
    d = r["distill"]
    teacher = r["before"]["accuracy"]
    frac = round(d["distilled_accuracy_mean"] / teacher, 4)
    gain = round(100 * (d["distilled_accuracy_mean"] - d["alone_accuracy_mean"]), 2)
    return [("teacher / student params", ">= 4x", r["param_ratio"], r["param_ratio"] >= 4),
            ("student / teacher accuracy", ">= 0.97", frac, frac >= 0.97),
            ("distilled - alone (points)", ">= 2", gain, gain >= 2)]


CASES = ("digits_pruned", "digits_channels", "digits_int8", "digits_static_int8", "digits_distill")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the reports and rows to this file")
    parser.add_argument("--only", nargs="*", choices=CASES, help="run only these cases")
    args = parser.parse_args()
    rows, reports = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or CASES:
            t = time.perf_counter()
            sets = {}
            if name == "digits_distill":
                sets["compress.distill.weights"] = str(Path(tmp) / "teacher.safetensors")
            spec = nnspec.load(ROOT / "specs" / f"{name}.nn", sets=sets)
            report = compress(spec, Path(tmp) / name, log=lambda m: None)
            reports[name] = report
            for crit, target, value, met in criteria(name, report):
                rows.append((name, crit, target, value, "yes" if met else "NO"))
            print(f"{name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    head = ("case", "criterion", "target", "measured", "met")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head))
    for r in rows:
        print(line.format(*[str(x) for x in r]))
    for name, r in reports.items():
        b, a = r["before"], r["after"]
        print(f"{name}: latency {b['latency_ms']:.2f} -> {a['latency_ms']:.2f} ms, size "
              f"{b['size_bytes']:,} -> {a['size_bytes']:,} B, accuracy {b['accuracy']:.4f} -> "
              f"{a['accuracy']:.4f}")
        if "distill" in r:
            d = r["distill"]
            print(f"{name} per seed {d['seeds']}: distilled {d['distilled_accuracy']} (mean "
                  f"{d['distilled_accuracy_mean']}), alone {d['alone_accuracy']} (mean "
                  f"{d['alone_accuracy_mean']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "reports": reports}, indent=2))
    return 0 if all(r[4] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
