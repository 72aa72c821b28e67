"""Differential testing on demand: many random valid specs, each built by nnspec and run by the
reference interpreter in float64 (tests/differential/specgen.py and harness.py).

Usage (from the repository root, with nnspec and hypothesis installed):

    python scripts/differential.py [--count 50000] [--seed S] [--out DIR]

  --count N   how many specs to draw (default 50,000; CI's tests/differential draws 1,000)
  --seed S    where to start (default 0); runs with the same seed draw the same specs, and
              different seeds draw different ones
  --out DIR   where failing specs go (default differential-failures/): one new folder per failure
              holding spec.nn, helper.nn when the spec includes one, and error.txt; existing
              files are never overwritten

It prints its progress and then `ran N specs, F failed`; the exit status is 0 when none failed,
1 when some did, 2 for a usage error. A spec that does not check is a generator bug; one whose
module and interpreter disagree (or that fails to run) is a compiler or interpreter bug: keep
its minimal form under tests/differential/regressions/.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 500   # specs per hypothesis run; each run has its own seed


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="differential.py", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=positive, default=50_000, help="specs to draw")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--out", type=Path, default=Path("differential-failures"),
                        help="folder for failing specs")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is not a folder")
    return args


def save(out: Path, text: str, helper: str | None, error: str) -> Path:
    """Write one failure into a new folder under `out` (never into an existing one)."""
    out.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1_000_000):
        folder = out / f"failure-{n:04d}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        (folder / "spec.nn").write_text(text, encoding="utf-8")
        if helper is not None:
            (folder / "helper.nn").write_text(helper, encoding="utf-8")
        (folder / "error.txt").write_text(error, encoding="utf-8")
        return folder
    raise RuntimeError(f"no free folder name under {out}")


def run(count: int, seed: int, out: Path) -> tuple[int, int]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    from tests.differential.specgen import check_generated, specs

    ran = failed = 0
    chunk = 0
    start = time.monotonic()
    while ran < count:
        size = min(CHUNK, count - ran)
        done = [0]

        @with_seed(seed + chunk)
        @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(specs())
        def one(generated):
            nonlocal failed
            done[0] += 1
            try:
                check_generated(generated)
            except Exception as err:   # every failure is reported and saved; the run goes on
                failed += 1
                text = f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}"
                folder = save(out, generated.text, generated.helper, text)
                print(f"  failed: {folder}", flush=True)

        try:
            one()
        except Exception as err:   # the generator itself failed: a bug of specgen.py
            failed += 1
            folder = save(out, "", None, f"the generator failed (seed {seed + chunk}):\n"
                          f"{traceback.format_exc()}")
            print(f"  generator failed ({type(err).__name__}): {folder}", flush=True)
            done[0] = max(done[0], 1)
        ran += done[0]
        chunk += 1
        print(f"ran {ran} specs, {failed} failed ({time.monotonic() - start:.0f} s)", flush=True)
    return ran, failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ran, failed = run(args.count, args.seed, args.out)
    print(f"ran {ran} specs, {failed} failed" + (f"; failing specs are under {args.out}/"
                                                 if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
