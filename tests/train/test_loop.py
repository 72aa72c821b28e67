"""One-process training: accuracy on digits, the files a run writes, exact resume after a step
limit, SIGKILL or Ctrl-C, checkpoint retention and torn saves, early stopping, accumulation."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.lang.config import Call, ParallelSpec
from nnspec.outputs import OutputError
from nnspec.train import run
from nnspec.train.data import load_data

from .conftest import PYTHON, ROOT, sections, subprocess_env


def spec(name: str, **overrides):
    return nnspec.load(ROOT / f"specs/{name}.nn", **overrides)


def rows(out: Path) -> list[list[str]]:
    return list(csv.reader(open(out / "metrics.csv")))


def test_lenet5_reaches_97_percent_on_digits(tmp_path):
    train, parallel = sections(epochs=40, batch_size=64, optimizer=("adamw", {"lr": 3e-3}),
                               schedule="warmup_cosine")
    start = time.time()
    final = run(spec("lenet5"), train, parallel, tmp_path, progress=False)
    seconds = time.time() - start
    assert json.loads((tmp_path / "final.json").read_text()) == final
    assert final["accuracy"] >= 0.97, final
    assert final["step"] == 40 * 23 and final["status"] == "completed"
    print(f"lenet5: {final['accuracy']:.4f} in {seconds:.1f} s")
    # one eval row per epoch, train rows every 20 steps, TensorBoard events beside them
    table = rows(tmp_path)
    assert table[0] == ["step", "epoch", "phase", "lr", "loss", "accuracy"]
    assert sum(r[2] == "eval" for r in table[1:]) == 40
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # the saved weights are the evaluated model: they reproduce the final test loss
    model = spec("lenet5").build().eval()
    model.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    test = load_data(train.data, spec("lenet5").summary(), split=train.split, seed=train.seed).test
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(test.inputs[0]), test.targets).item()
    assert loss == pytest.approx(final["loss"], rel=1e-4)


def test_digits_mlp_reaches_97_percent_on_digits(tmp_path):
    train, parallel = sections(epochs=20, batch_size=64, optimizer=("adamw", {"lr": 3e-3}))
    start = time.time()
    final = run(spec("digits_mlp"), train, parallel, tmp_path, progress=False)
    print(f"digits_mlp: {final['accuracy']:.4f} in {time.time() - start:.1f} s")
    assert final["accuracy"] >= 0.97, final


# ---- resume --------------------------------------------------------------------------------------
# digits_mlp has dropout, so a resumed run only matches when the RNG state came back too; the
# cosine schedule and eval/early-stopping counters must come back as well.

STEPS = 1200
RESUME = dict(steps=STEPS, batch_size=64, optimizer=("adamw", {"lr": 3e-3}),
              schedule=("warmup_cosine", {"warmup": 50}), checkpoint_every=25, eval_every=100,
              early_stopping=50, seed=7)
RESUME_JSON = json.dumps({**RESUME, "optimizer": {"name": "adamw", "kwargs": {"lr": 3e-3}},
                          "schedule": {"name": "warmup_cosine", "kwargs": {"warmup": 50}}})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the resume settings: final.json, weights and metrics rows."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference")
    final = run(spec("digits_mlp"), *sections(**RESUME), out, progress=False)
    return final, load_file(out / "model.safetensors"), rows(out)


def assert_same_as_reference(out: Path, final: dict, reference) -> None:
    ref_final, ref_weights, ref_rows = reference
    assert final == ref_final  # loss and accuracy to the last bit
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    assert rows(out) == ref_rows


def test_resume_after_a_step_limit_matches_an_uninterrupted_run(tmp_path, reference):
    stopped = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, progress=False, stop_at=430)
    assert stopped["status"] == "stopped" and stopped["step"] == 430
    assert not (tmp_path / "final.json").exists()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000400.pt", "step-00000425.pt", "step-00000430.pt"]  # keep 3
    # a torn save (a temporary file) and a damaged newest checkpoint are both passed over
    (tmp_path / "checkpoints" / ".step-00000450.pt.999.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "checkpoints" / "step-00000455.pt").write_bytes(b"not a checkpoint")
    final = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, resume=True, progress=False)
    assert_same_as_reference(tmp_path, final, reference)


def start_module(out: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "nnspec.train", "specs/digits_mlp.nn", "--out", str(out),
                             "--train-json", RESUME_JSON, "--no-progress"], cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(folder.glob("step-*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.005)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, reference):
    proc = start_module(tmp_path)
    wait_for_checkpoint(proc, tmp_path / "checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "final.json").exists()  # it died mid-training
    final = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, resume=True, progress=False)
    assert_same_as_reference(tmp_path, final, reference)


def test_ctrl_c_saves_a_checkpoint_and_resume_matches(tmp_path, reference):
    proc = start_module(tmp_path)
    wait_for_checkpoint(proc, tmp_path / "checkpoints")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["status"] == "interrupted" and 0 < result["step"] < STEPS
    assert (tmp_path / "checkpoints" / f"step-{result['step']:08d}.pt").is_file()
    assert "Traceback" not in stderr and "--resume continues" in stderr
    final = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, resume=True, progress=False)
    assert_same_as_reference(tmp_path, final, reference)


@pytest.mark.parametrize("where", ["before_update", "after_update"])
def test_a_second_ctrl_c_inside_a_step_still_saves_a_whole_state(tmp_path, reference, monkeypatch,
                                                                 where):
    """KeyboardInterrupt raised inside step 301: before the optimizer update the step is rolled
    back (checkpoint at 300), after it the step counts (checkpoint at 301); either resumes to
    the reference."""
    from nnspec.train.local import LocalBackend
    original = LocalBackend.train_step

    def train_step(self, micro, objective):
        if self.updates == 300 and where == "before_update":
            self.forward(micro[0][0])  # draws dropout masks, which the rollback must undo
            raise KeyboardInterrupt
        loss = original(self, micro, objective)
        if self.updates == 301 and where == "after_update":
            raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(LocalBackend, "train_step", train_step)
    result = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, progress=False)
    step = 300 if where == "before_update" else 301
    assert result["status"] == "interrupted" and result["step"] == step
    monkeypatch.setattr(LocalBackend, "train_step", original)
    final = run(spec("digits_mlp"), *sections(**RESUME), tmp_path, resume=True, progress=False)
    assert_same_as_reference(tmp_path, final, reference)


def test_reduce_on_plateau_state_survives_a_resume(tmp_path):
    settings = dict(steps=150, eval_every=10, optimizer=("sgd", {"lr": 1.0}), seed=2,
                    schedule=("reduce_on_plateau", {"patience": 0, "factor": 0.5}))
    whole = run(spec("digits_mlp"), *sections(**settings), tmp_path / "whole", progress=False)
    lrs = {float(r[3]) for r in rows(tmp_path / "whole")[1:]}
    assert lrs == {1.0, 0.5, 0.25, 0.125}  # halved at the evaluations of steps 20, 70, 140
    run(spec("digits_mlp"), *sections(**settings), tmp_path / "cut", progress=False, stop_at=50)
    resumed = run(spec("digits_mlp"), *sections(**settings), tmp_path / "cut", resume=True,
                  progress=False)
    assert resumed == whole and rows(tmp_path / "cut") == rows(tmp_path / "whole")


def test_overwrite_clears_only_the_earlier_runs_files(tmp_path):
    train, parallel = sections(steps=30, checkpoint_every=10)
    run(spec("digits_mlp"), train, parallel, tmp_path, progress=False)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 3
    train, parallel = sections(steps=5)
    (tmp_path / "checkpoints" / "notes.txt").write_text("not nnspec's")
    with pytest.raises(OutputError, match="--overwrite"):  # never without consent
        run(spec("digits_mlp"), train, parallel, tmp_path, progress=False)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 4
    run(spec("digits_mlp"), train, parallel, tmp_path, progress=False, overwrite=True)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["notes.txt"]
    assert [r[0] for r in rows(tmp_path)[1:]] == ["5", "5"]  # train row, final eval row


# ---- the rest of the loop ------------------------------------------------------------------

def test_the_global_batch_is_the_same_for_any_layout():
    """Step s trains on the same samples whatever the ranks and accumulation; an epoch covers
    every sample, the last batch filled up from the start of the permutation."""
    from nnspec.train.batches import BatchPlan
    one = BatchPlan(n=100, batch=16, micro=16, accum=1, world=1, rank=0, seed=3)
    assert one.steps_per_epoch == 7
    order = one.order(0)
    assert sorted(order[:100].tolist()) == list(range(100)) and order[100:].tolist() == \
        order[:12].tolist()
    for world, accum in ((2, 1), (2, 4), (1, 8)):
        for step in (0, 6, 9):
            plans = [BatchPlan(100, 16, 16 // (world * accum), accum, world, r, 3)
                     for r in range(world)]
            parts = [i for p in plans for i in torch.cat(p.micro_batches(step, p.order(step // 7)))]
            assert sorted(parts) == sorted(one.micro_batches(step, one.order(step // 7))[0])
    assert not torch.equal(one.order(0), one.order(1))


def test_early_stopping_and_progress_bar(tmp_path, capsys):
    # lr 0: the evaluation loss never improves, so the run stops after 1 + 2 evaluations
    train, parallel = sections(steps=100, eval_every=5, early_stopping=2,
                               optimizer=("adamw", {"lr": 0.0}))
    final = run(spec("lenet5"), train, parallel, tmp_path, progress=True)
    assert final["status"] == "early_stopping" and final["step"] == 15
    err = capsys.readouterr().err
    assert "lenet5" in err and "15/100" in err and "accuracy=" in err


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    weights = []
    for accum in (1, 4):
        train, _ = sections(steps=15, batch_size=64, optimizer=("sgd", {"lr": 0.1,
                                                                         "momentum": 0.9}))
        run(spec("lenet5"), train, ParallelSpec(grad_accum=accum), tmp_path / str(accum),
            progress=False)
        weights.append(load_file(tmp_path / str(accum) / "model.safetensors"))
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-5)


def test_bf16_and_clipping_train(tmp_path):
    train, _ = sections(epochs=3, clip_grad_norm=0.5, optimizer=("adamw", {"lr": 1e-2}))
    final = run(spec("lenet5"), train, ParallelSpec(precision="bf16"), tmp_path, progress=False)
    assert final["accuracy"] > 0.5


def test_binary_classification_with_bce(tmp_path):
    mlp = nnspec.loads("model m {\n  input x: float[30]\n  fc1: linear(16)\n  relu\n"
                       "  fc2: linear(1)\n}\n")
    train, parallel = sections(data="breast_cancer", loss="bce", epochs=20, batch_size=32,
                               optimizer=("adam", {"lr": 1e-2}))
    final = run(mlp, train, parallel, tmp_path, progress=False)
    assert final["accuracy"] > 0.93, final


def test_char_lstm_learns_a_text(tmp_path):
    (tmp_path / "poem.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    lstm = spec("char_lstm", vocab=28, seq=32, embed=16, hidden=64, layers=1, dropout_p=0.0)
    train, parallel = sections(data=Call(name="text", args=(str(tmp_path / "poem.txt"),),
                                         kwargs={"stride": 8}),
                               loss="lm", metrics=("accuracy", "perplexity"), epochs=4,
                               batch_size=16, optimizer=("adamw", {"lr": 1e-2}))
    final = run(lstm, train, parallel, tmp_path / "out", progress=False)
    assert final["perplexity"] < 2.5 and final["accuracy"] > 0.8, final
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab == sorted(set("the quick brown fox jumps over the lazy dog. "))


KILL_IN_SAVE = """
import io, os, signal, sys, torch
from nnspec.train.__main__ import main
real_save, saves = torch.save, []

def save(obj, f, *args, **kwargs):  # the third checkpoint dies half-written, on disk
    saves.append(1)
    if len(saves) < 3 or not hasattr(f, "fileno"):
        return real_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = save
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_usable(tmp_path, reference):
    """SIGKILL while the step-75 checkpoint is half on disk: the steps 25 and 50 ones are
    whole, the torn one is only a temporary file, and --resume from step 50 ends as the
    uninterrupted run."""
    driver = tmp_path / "kill_in_save.py"
    driver.write_text(KILL_IN_SAVE)
    out = tmp_path / "run"
    proc = subprocess.run([PYTHON, str(driver), "specs/digits_mlp.nn", "--out", str(out),
                           "--train-json", RESUME_JSON, "--no-progress"], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names[1:] == ["step-00000025.pt", "step-00000050.pt"], names
    assert names[0].startswith(".step-00000075.pt.") and names[0].endswith(".tmp")
    assert not (out / "final.json").exists()
    final = run(spec("digits_mlp"), *sections(**RESUME), out, resume=True, progress=False)
    assert_same_as_reference(out, final, reference)
