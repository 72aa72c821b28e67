"""Outputs appear whole or not at all (issue 9, defect 8), and usage errors are one line, exit 2,
with nothing written (defect 9)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from nnspec import outputs
from nnspec.lang.check import DEFAULT_MAX_PARAMS
from nnspec.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
LENET, MLP = str(ROOT / "specs/lenet5.nn"), str(ROOT / "specs/digits_mlp.nn")
COMPILED = ["ds_config.json", "launch.sh", "model.py", "summary.json"]


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- defect 8: whole outputs -------------------------------------------------------------------

def test_a_second_compile_replaces_the_first_whole_and_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "out"
    assert main(["compile", LENET, "-o", str(out)]) == 0
    assert main(["compile", MLP, "-o", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["model"].startswith("digits_mlp(")
    assert listing(out) == [outputs.MARKER, *COMPILED]
    assert listing(tmp_path) == ["out"]


def test_a_folder_with_files_nnspec_did_not_write_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["compile", LENET, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnspec: error: -o ") and err.count("\n") == 1
    assert listing(out) == ["notes.txt"] and listing(tmp_path) == ["out"]
    # nor is an earlier output of another command (compress) replaced by compile
    outputs.write_folder(tmp_path / "c", {"report.json": "{}"}, "compress")
    assert main(["compile", LENET, "-o", str(tmp_path / "c")]) == 2
    assert listing(tmp_path / "c") == [outputs.MARKER, "report.json"]


def test_a_file_added_to_an_earlier_output_survives_its_replacement(tmp_path):
    """Between the check and the swap someone adds a file: the old output is moved aside and
    only nnspec's files are removed from it, so the new file is kept."""
    out = tmp_path / "out"
    outputs.write_folder(out, {"a.txt": "1"}, "test")
    real = outputs._swap_in

    def swap_in(stage, dest):
        (dest / "late.txt").write_text("added after the check")
        return real(stage, dest)

    outputs._swap_in = swap_in
    try:
        outputs.write_folder(out, {"a.txt": "2"}, "test")
    finally:
        outputs._swap_in = real
    assert (out / "a.txt").read_text() == "2"
    kept = [p for p in tmp_path.rglob("late.txt")]
    assert len(kept) == 1 and kept[0].read_text() == "added after the check"
    assert kept[0].parent.name.startswith("out.kept-") and listing(kept[0].parent) == ["late.txt"]


def test_a_failure_while_staging_leaves_the_earlier_output_and_no_temporary_files(tmp_path,
                                                                                   monkeypatch):
    out = tmp_path / "out"
    assert main(["compile", LENET, "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def failing(path, data, executable):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data, executable)

    real = outputs._write_file
    monkeypatch.setattr(outputs, "_write_file", failing)
    with pytest.raises(OSError):
        outputs.write_folder(out, {n: "new" for n in COMPILED}, "compile")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert listing(tmp_path) == ["out"]


def test_a_killed_writer_leaves_a_whole_output_and_its_leftovers_are_swept(tmp_path):
    """SIGKILL a process in the middle of its staging: the folder is still the earlier output,
    and the next write removes the dead process's staging folder."""
    out = tmp_path / "out"
    outputs.write_folder(out, {"a.txt": "old", "b.txt": "old"}, "test")
    code = textwrap.dedent(f"""
        import os, signal
        from nnspec import outputs
        real = outputs._write_file
        def write(path, data, executable):
            real(path, data, executable)
            os.kill(os.getpid(), signal.SIGKILL)
        outputs._write_file = write
        outputs.write_folder(outputs.Path({str(out)!r}), {{"a.txt": "new", "b.txt": "new"}}, "test")
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env(), timeout=60)
    assert proc.returncode == -9
    assert [(out / n).read_text() for n in ("a.txt", "b.txt")] == ["old", "old"]
    assert len(listing(tmp_path)) == 2  # out, and the dead process's staging folder
    outputs.write_folder(out, {"a.txt": "new", "b.txt": "new"}, "test")
    assert listing(tmp_path) == ["out"]


RACER = """
import sys
from nnspec.cli import main
spec, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
codes = [main(["compile", spec, "-o", out]) for _ in range(rounds)]
sys.exit(max(codes))
"""


def test_two_processes_racing_into_one_folder_never_mix_two_specs(tmp_path):
    """20 compiles of each of two specs into one DIR at the same time: every state of DIR that
    a reader sees, and the last one, is one spec's whole output; all 40 compiles succeed."""
    expected = []
    for spec in (LENET, MLP):
        solo = tmp_path / Path(spec).stem
        assert main(["compile", spec, "-o", str(solo)]) == 0
        expected.append({n: (solo / n).read_bytes() for n in COMPILED})
    out = tmp_path / "race"
    stop, seen, mixed = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            try:
                fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:  # through one folder handle: a snapshot of one output, never of two
                snap = {n: _read_at(fd, n) for n in COMPILED}
            except OSError:
                continue  # that output was removed while we read it
            finally:
                os.close(fd)
            (seen if snap in expected else mixed).append(snap)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    procs = [subprocess.Popen([sys.executable, "-c", RACER, spec, str(out), "20"], env=env(),
                              stderr=subprocess.PIPE, text=True) for spec in (LENET, MLP)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    stop.set()
    thread.join()
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not mixed
    final = {n: (out / n).read_bytes() for n in COMPILED}
    assert final in expected
    assert listing(tmp_path) == sorted(["digits_mlp", "lenet5", "race"])


def _read_at(fd: int, name: str) -> bytes:
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 1 << 20)
    finally:
        os.close(f)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_compile_writes_the_usual_modes_under_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert main(["compile", LENET, "-o", str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~mask
    assert mode.pop("launch.sh") == 0o777 & ~mask
    assert set(mode.values()) == {0o666 & ~mask}


def test_export_weights_writes_one_whole_file_with_the_usual_mode(tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "step-00000001.pt"
    torch.save({"model": {"w": torch.ones(3)}}, ckpt)
    out = tmp_path / "w.safetensors"
    for value in (1, 2):
        torch.save({"model": {"w": torch.full((3,), float(value))}}, ckpt)
        assert main(["export-weights", str(ckpt), "-o", str(out)]) == 0
    assert load_file(out)["w"].tolist() == [2.0, 2.0, 2.0]
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~outputs.umask()
    assert listing(tmp_path) == ["step-00000001.pt", "w.safetensors"]


# ---- defect 9: usage errors --------------------------------------------------------------------

HUGE_SYNTHETIC = """
model huge() {
  input x: float[1000, 1000, 1000]
  flatten
  fc: linear(2)
}

train {
  data = synthetic(classes=2)
  steps = 1
}
"""


def _cases(tmp: Path) -> dict[str, list[str]]:
    (tmp / "file").write_text("a file")
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    (tmp / "huge.nn").write_text(HUGE_SYNTHETIC)
    import torch
    torch.save({"model": {"w": torch.ones(2)}}, tmp / "ckpt")
    return {
        "compile -o an existing file": ["compile", LENET, "-o", str(tmp / "file")],
        "compile -o a path under a file": ["compile", LENET, "-o", str(tmp / "file" / "x")],
        "compile -o /dev/null": ["compile", LENET, "-o", "/dev/null"],
        "compile -o a dangling symlink": ["compile", LENET, "-o", str(tmp / "dangling")],
        'compile -o ""': ["compile", LENET, "-o", ""],
        "compile --world-size -3": ["compile", LENET, "-o", str(tmp / "o"), "--world-size", "-3"],
        "compress -o an existing file": ["compress", str(ROOT / "specs/digits_pruned.nn"), "-o",
                                         str(tmp / "file")],
        "compress --weights /nonexistent": ["compress", str(ROOT / "specs/digits_pruned.nn"),
                                            "-o", str(tmp / "o"), "--weights", "/nonexistent"],
        "export-weights -o a folder": ["export-weights", str(tmp / "ckpt"), "-o", str(tmp)],
        "export-weights -o /dev/null": ["export-weights", str(tmp / "ckpt"), "-o", "/dev/null"],
        "train --out a file": ["train", MLP, "--out", str(tmp / "file")],
        "train --out a dangling symlink": ["train", MLP, "--out", str(tmp / "dangling")],
        "train --resume without --out": ["train", MLP, "--resume"],
        "train out of memory (synthetic data of a huge input)": ["train", str(tmp / "huge.nn"),
                                                                 "--out", str(tmp / "o")],
        "launch --num-accelerators 0": ["launch", MLP, "--num-accelerators", "0", "--dry-run"],
        "launch --num-gpus 0": ["launch", MLP, "--num-gpus", "0", "--dry-run"],
        "plan --gpus 1000000000 --auto": ["plan", MLP, "--gpus", "1000000000", "--auto"],
        "plan --gpus 1024 --nodes 1024 --auto": ["plan", str(ROOT / "specs/gpt2_small.nn"),
                                                 "--gpus", "1024", "--nodes", "1024", "--auto"],
    }


CASE_NAMES = [
    "compile -o an existing file", "compile -o a path under a file", "compile -o /dev/null",
    "compile -o a dangling symlink", 'compile -o ""', "compile --world-size -3",
    "compress -o an existing file", "compress --weights /nonexistent",
    "export-weights -o a folder", "export-weights -o /dev/null", "train --out a file",
    "train --out a dangling symlink", "train --resume without --out",
    "train out of memory (synthetic data of a huge input)", "launch --num-accelerators 0",
    "launch --num-gpus 0", "plan --gpus 1000000000 --auto", "plan --gpus 1024 --nodes 1024 --auto",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_usage_errors_are_one_line_exit_2_and_write_nothing(case, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    argv = _cases(work)[case]
    monkeypatch.chdir(work)  # a default runs/ folder would appear here
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnspec: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_plan_uses_the_one_default_parameter_limit():
    args = build_parser().parse_args(["plan", LENET, "--gpus", "1"])
    assert args.max_params == DEFAULT_MAX_PARAMS == 10_000_000_000


ALLOCATOR_OOM = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
from nnspec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_model_too_large_for_memory_is_a_one_line_error(tmp_path):
    """torch's allocator fails building the model (address space capped at 6 GiB, the model
    needs 24 GB): one line, exit 2, and the run folder it had claimed is gone again."""
    spec = tmp_path / "big.nn"
    spec.write_text("model big() {\n  input x: float[1, 8, 8]\n  flatten\n"
                    "  fc: linear(90000000)\n  head: linear(10)\n}\n\n"
                    "train {\n  data = digits\n  steps = 1\n}\n")
    code = ALLOCATOR_OOM.replace("CAP", str(6 << 30))
    proc = subprocess.run([sys.executable, "-c", code, "train", str(spec), "--no-progress"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nnspec: error:")]
    assert lines and "out of memory" in lines[0] and "Traceback" not in proc.stderr
    assert listing(tmp_path) == ["big.nn"]
