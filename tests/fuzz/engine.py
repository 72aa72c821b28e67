"""Put fuzz cases on disk, run `check` (and `compile -o` for a sample) on them, judge the result.

Shared by the CI test (tests/fuzz/test_fuzz_cli.py) and the on-demand run (scripts/fuzz.py).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .hostile import FileCase
from .mutate import ROOT, SEED_DIRS, Mutant
from .runner import Outcome, run_case

COMPILE_EVERY = 5  # every 5th mutant is also compiled, to reach lower and the emitters


def make_tree(dest: Path) -> Path:
    """A copy of the folders the mutants start from, so a mutant's includes resolve as its
    origin's do and nothing is ever written into the repository."""
    for folder in SEED_DIRS:
        shutil.copytree(ROOT / folder, dest / folder, dirs_exist_ok=True)
    return dest


def warm_up(tree: Path) -> None:
    """Check every shipped spec and compile one before fuzzing: nnspec and torch import modules
    lazily (an optimizer's first use imports torch._dynamo), and an import cut short by a case's
    time limit would leave a half-made module behind that breaks every case after it."""
    from .runner import call_cli

    for spec in sorted((tree / "specs").glob("*.nn")):
        call_cli(["check", str(spec)], seconds=600)
    out = tree / "warm-up-out"
    call_cli(["compile", str(tree / "specs" / "digits_mlp.nn"), "-o", str(out)], seconds=600)
    shutil.rmtree(out, ignore_errors=True)


def commands(spec: str, out: Path | None) -> list[tuple[list[str], Path | None]]:
    """The CLI calls made on one spec: check, and compile -o when `out` is given."""
    calls: list[tuple[list[str], Path | None]] = [(["check", spec], None)]
    if out is not None:
        calls.append((["compile", spec, "-o", str(out)], out))
    return calls


def run_mutant(tree: Path, mutant: Mutant) -> list[Outcome]:
    """Write `mutant` beside its origin in `tree`, run the CLI on it, and clean up after."""
    path = tree / mutant.path
    path.write_bytes(mutant.data)
    out = tree / f"fuzz-out-{mutant.number}" if mutant.number % COMPILE_EVERY == 0 else None
    sources = {str(path): mutant.data.decode("utf-8", "replace")}
    try:
        return [run_case(argv, tree, sources, target) for argv, target in commands(str(path), out)]
    finally:
        path.unlink()
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)


def run_file_case(folder: Path, case: FileCase, compile: bool = False) -> Outcome:
    """Build `case` in the empty `folder` and run check (or compile -o) on its spec."""
    spec = case.setup(folder)
    out = folder / "out" if compile else None
    argv, target = commands(spec, out)[-1]
    outcome = run_case(argv, folder, None, target)
    if case.secret and case.secret in outcome.stdout + outcome.stderr:
        outcome.problems.append("leak: a diagnostic quotes a file that is not a spec")
    return outcome


def save_failure(folder: Path, name: str, data: bytes, outcomes: list[Outcome]) -> Path:
    """Keep a failing input as `folder/NAME.nn` with `NAME.txt` saying what went wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.nn").write_bytes(data)
    (folder / f"{name}.txt").write_text("\n\n".join(o.report() for o in outcomes if o.problems),
                                        encoding="utf-8")
    return folder / f"{name}.nn"


def fifo_safe_remove(folder: Path) -> None:
    """Remove a case folder, links and FIFOs included, without following or opening them."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            os.unlink(full) if os.path.islink(full) else os.rmdir(full)
    os.rmdir(folder)
