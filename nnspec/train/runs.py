"""Run folders: each `nnspec train` gets its own, and never empties another run's.

Without `--out`, a run claims `runs/<model>/version_N`, the next free N, with an exclusive mkdir,
so two runs started at once never share one. An `--out DIR` that already holds files is refused
unless the run continues the run recorded there (`--resume`), or `--overwrite` gives consent to
replace the files nnspec writes (files of other names are never touched). `run.json` in each run
folder records which spec and model the run trains, which is what `--resume` checks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nnspec.outputs import OutputError, check_folder
from nnspec.train.checkpoint import atomic_write_json, atomic_write_text, steps_in

RUNS_ROOT = Path("runs")
RECORD = "run.json"
# what a run writes at the top of its folder; with checkpoints/ and tensorboard/ events
OUTPUTS = ("metrics.csv", "final.json", "model.safetensors", "vocab.json", "report.json", RECORD)
_VERSION = re.compile(r"^version_(\d+)$")


def new_run_folder(model: str, root: Path = RUNS_ROOT) -> Path:
    """Create and return `root/model/version_N` for the smallest N above every existing one.

    The mkdir is exclusive: a concurrent run that took N makes this one try N+1.
    """
    parent = Path(root) / model
    check_folder(str(parent), "runs folder", replaced=False)
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for m in map(_VERSION.match, os.listdir(parent)) if m]
    n = max(taken, default=-1) + 1
    while True:
        folder = parent / f"version_{n}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1


def check_out_dir(out: Path | str, spec, resume: bool, overwrite: bool) -> Path:
    """Whether this run may write into `out` (read-only: every rank calls it).

    Raises:
        OutputError: `out` is not a folder path; it holds files and the run neither resumes the
            run recorded there nor has --overwrite; --resume of a folder that is not a run of
            this spec's model.
    """
    out = check_folder(str(out), "--out", replaced=False)
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if resume:
        record = read_record(out)
        if record is None:
            raise OutputError(f"--resume: {out} is not a folder of `nnspec train` (it has no "
                              f"{RECORD}); choose the run's own folder")
        want = _identity(spec)
        if (record.get("model"), record.get("spec")) != (want["model"], want["spec"]):
            raise OutputError(f"--resume: {out} is a run of model `{record.get('model')}` of "
                              f"{record.get('spec')}, not of `{want['model']}` of {want['spec']}")
        if not has_progress(out) and not overwrite:
            raise OutputError(f"--resume: {out} has no checkpoint to continue from; pass "
                              "--overwrite to start that run over, replacing its files")
        return out
    if not overwrite:
        raise OutputError(f"--out {out} is not empty; pass --resume to continue the run there, "
                          "--overwrite to replace the files nnspec wrote there, or another "
                          "folder (without --out each run gets its own under runs/)")
    return out


def has_progress(out: Path) -> bool:
    """Whether a run in `out` left something to resume from: a checkpoint, or (an ensemble,
    train/ensemble.py) a member's checkpoint or finished member."""
    if steps_in(out / "checkpoints"):
        return True
    return any(steps_in(m / "checkpoints") or (m / "final.json").is_file()
               for m in out.glob("members/*") if m.name.isdigit())


def read_record(out: Path) -> dict | None:
    try:
        record = json.loads((Path(out) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def prepare(out: Path, spec, resume: bool, vocab) -> list[Path]:
    """Rank 0, after the check: create `out`, clear an earlier run's files when the run starts
    over (only nnspec's own names), and record the run. Returns the paths this created, for
    `abandon`."""
    created = [p for p in (*reversed(out.parents), out) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    if not resume or not has_progress(out):
        _remove_run_files(out)
    written = {out / RECORD: _identity(spec)}
    if vocab is not None:
        written[out / "vocab.json"] = vocab
    created += [path for path in written if not path.exists()]
    atomic_write_json(out / RECORD, written[out / RECORD])
    if vocab is not None:
        atomic_write_text(out / "vocab.json", json.dumps(vocab) + "\n")
    return created


def abandon(created: list[Path]) -> None:
    """Undo `prepare` (and a folder `new_run_folder` claimed) for a run that failed before it
    wrote anything else, e.g. out of memory building its model: nothing is left behind. Folders
    are removed only while empty."""
    for path in reversed(created):
        try:
            path.rmdir() if path.is_dir() else path.unlink()
        except OSError:
            return


def _identity(spec) -> dict:
    source = getattr(spec, "source_name", None) or "<memory>"
    return {"model": spec.name, "spec": Path(str(source)).name}


def _remove_run_files(out: Path) -> None:
    for member in out.glob("members/*"):  # an ensemble's members: a run each (train/ensemble.py)
        if member.is_dir() and member.name.isdigit():
            _remove_run_files(member)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for _, path in steps_in(out / "checkpoints"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for pattern in ("checkpoints/.step-*", "checkpoints/zero_to_*.py",
                    "tensorboard/events.out.tfevents.*"):
        for path in out.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
