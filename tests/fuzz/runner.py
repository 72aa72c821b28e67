"""Run the real CLI on one fuzz case, in this process, and judge what it did.

A case passes when `nnspec.cli.main(argv)` returns (or exits) with 0, 1 or 2; no exception escapes
it and no "Traceback" is printed; an exit of 1 prints rendered diagnostics ending in "N errors
found"; an exit of 2 prints a one-line `nnspec: error:` (or argparse's usage); nothing appears in
the case's folder on failure; and it takes under `SLOW_SECONDS`.

Time is CPU time (`time.process_time`): the machines this runs on are shared, and wall time
under load is several times the work done. Each case runs under two timers (`signal.setitimer`,
whose handler raises a `BaseException` that nnspec's `except Exception` cannot swallow): one of
HARD_SECONDS of CPU for loops, one of WAIT_SECONDS of wall time for a case blocked on a read (a
blocking `open()` of a FIFO is interrupted too); past either, the case is a hang. A case over
SLOW_SECONDS of CPU, or over WAIT_SLOW_SECONDS of wall time, is slow. A memory cap of MEMORY_CAP
bytes over what the process already maps makes a case that reads /dev/zero fail fast with a
MemoryError instead of eating the machine. A case
stuck in C code that ignores signals is the one thing this cannot stop; scripts/fuzz.py runs the
cases in a watched worker process for that.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

SLOW_SECONDS = 2.0        # the bound for any one case, in CPU seconds
HARD_SECONDS = 10.0       # CPU seconds past which a case counts as a hang and is stopped
WAIT_SLOW_SECONDS = 15.0  # wall seconds that no load of a shared machine explains
WAIT_SECONDS = 60.0       # wall seconds past which a (blocked) case counts as a hang
MEMORY_CAP = 2 << 30   # address space a case may add to the process

DIAG_HEAD = re.compile(r"^error\[E\d{4}\]: ", re.M)


class Hang(BaseException):
    """Raised by the timer inside a case that runs past HARD_SECONDS."""


@dataclass
class Outcome:
    """What one CLI run did, and what was wrong with it (empty `problems`: it passed)."""

    argv: list[str]
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0   # CPU time
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The first problem's class: traceback, hang, slow, exit, output, written; or ok."""
        return self.problems[0].split(":", 1)[0] if self.problems else "ok"

    def report(self) -> str:
        return (f"$ nnspec {' '.join(a[:200] for a in self.argv)}\n"
                f"exit {self.code} after {self.seconds:.2f} s of CPU, "
                f"{self.wall:.2f} s of wall time\n"
                + "".join(f"problem: {p}\n" for p in self.problems)
                + f"--- stderr (first 3000 chars)\n{self.stderr[:3000]}")


def _on_alarm(signum, frame):
    raise Hang()


@contextlib.contextmanager
def _limits(seconds: float):
    """Arm the hang timer and the memory cap for one case; disarm both after it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + MEMORY_CAP
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    old_prof = signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, WAIT_SECONDS)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, old)
        signal.signal(signal.SIGPROF, old_prof)


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: no cap beyond the hard limit
        return resource.RLIM_INFINITY // 2


def call_cli(argv: list[str], seconds: float = HARD_SECONDS) -> Outcome:
    """Run `nnspec.cli.main(argv)` with captured output; record an escaped exception or a hang."""
    from nnspec.cli import main

    out, err = io.StringIO(), io.StringIO()
    outcome = Outcome(list(argv))
    start, cpu = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _limits(seconds):
            outcome.code = main(list(argv))
    except Hang:
        outcome.problems.append(f"hang: still running after {seconds:.0f} s of CPU or "
                                f"{WAIT_SECONDS:.0f} s of wall time")
    except SystemExit as exc:  # argparse's usage errors
        outcome.code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException as exc:  # noqa: BLE001 - anything that escapes main() is the finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exc()
        outcome.problems.append(f"traceback: {type(exc).__name__}: {str(exc)[:300]}\n{tb[-4000:]}")
    outcome.seconds = time.process_time() - cpu
    outcome.wall = time.perf_counter() - start
    outcome.stdout, outcome.stderr = out.getvalue(), err.getvalue()
    return outcome


def judge(outcome: Outcome, sources: dict[str, str] | None = None) -> None:
    """Add to `outcome.problems` whatever breaks the CLI's contract for bad input.

    `sources` maps a displayed file name to its text, to check that each diagnostic's location
    points at a line that exists.
    """
    if outcome.kind in ("hang", "traceback"):
        return
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        outcome.problems.append("traceback: printed on the console")
    if outcome.code not in (0, 1, 2):
        outcome.problems.append(f"exit: {outcome.code!r} is not 0, 1 or 2")
    elif outcome.code == 1:
        _judge_diagnostics(outcome, sources or {})
    elif outcome.code == 2:
        first = outcome.stderr.lstrip().splitlines()[:1]
        if not first or not first[0].startswith(("nnspec: error:", "usage: nnspec")):
            outcome.problems.append("output: exit 2 without a `nnspec: error:` line")
    if outcome.seconds > SLOW_SECONDS or outcome.wall > WAIT_SLOW_SECONDS:
        outcome.problems.append(f"slow: {outcome.seconds:.2f} s of CPU, {outcome.wall:.2f} s "
                                "of wall time")


def _judge_diagnostics(outcome: Outcome, sources: dict[str, str]) -> None:
    # line by line, not with one regex over the text: a diagnostic may quote a 100,000-digit
    # literal, and a backtracking pattern over that takes minutes
    lines = outcome.stderr.rstrip().split("\n")
    last = lines[-1].split(" ")
    if not DIAG_HEAD.search(outcome.stderr) or last[1:] not in (["error", "found"],
                                                              ["errors", "found"]):
        outcome.problems.append("output: exit 1 without rendered `error[E....]` diagnostics")
        return
    for line in lines:
        head, sep, rest = line.partition("--> ")
        if not sep or head.strip():
            continue
        name, line_no, col = (rest.rsplit(":", 2) + ["", ""])[:3]
        if not (line_no.isdigit() and col.isdigit()):
            outcome.problems.append(f"output: a location without line and column: {rest[:200]}")
        elif int(line_no) < 1 or int(col) < 1:
            outcome.problems.append(f"output: location {rest[:200]} is before the file")
        elif name in sources and int(line_no) > sources[name].count("\n") + 1:
            outcome.problems.append(f"output: location {rest[:200]} is past the end")


def _time_again(outcome: Outcome, argv: list[str], sources) -> None:
    """Run a case just over the limit once more and keep the lesser time, so a pause of the
    process (a page fault storm, a lazy import) is not blamed on the case."""
    again = call_cli(argv)
    if again.seconds <= SLOW_SECONDS and again.wall <= WAIT_SLOW_SECONDS and not again.problems:
        outcome.problems = [p for p in outcome.problems if not p.startswith("slow:")]
    outcome.seconds = min(outcome.seconds, again.seconds)
    outcome.wall = min(outcome.wall, again.wall)


def listing(folder: Path) -> set[str]:
    """Every path under `folder`, without following links (a case may plant a link loop)."""
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def run_case(argv: list[str], folder: Path, sources: dict[str, str] | None = None,
             out: Path | None = None) -> Outcome:
    """Run and judge one CLI call whose files live in `folder`; `out` is its output folder, if
    any: it must not appear when the command fails, and nothing else may appear in `folder`."""
    before = listing(folder)
    outcome = call_cli(argv)
    judge(outcome, sources)
    if outcome.kind == "slow" and outcome.seconds < 2 * SLOW_SECONDS:
        _time_again(outcome, argv, sources)
    after = listing(folder)
    allowed = set()
    if out is not None and outcome.code == 0:
        allowed = {p for p in after if p == out.name or p.startswith(out.name + os.sep)}
    new = sorted(after - before - allowed)
    if new:
        outcome.problems.append(f"written: left {', '.join(new[:5])} behind")
    if out is not None and outcome.code != 0 and out.exists():
        outcome.problems.append(f"written: {out.name} exists after a failed compile")
    return outcome
