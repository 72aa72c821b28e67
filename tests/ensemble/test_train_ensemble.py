"""`nnspec train` on a spec with an ensemble section: members trained one after another on their
own samples, one module written whose forward combines them (every combine), the report with
members and ensemble side by side, and a run that stops and resumes where it left off."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main
from nnspec.lang.config import Call
from nnspec.train import load_data
from nnspec.train.data import Split
from nnspec.train.ensemble import vary_split
from nnspec.train.ensemble_report import evaluate
from nnspec.train.metrics import build_objective

from .conftest import tiny_spec


def train(spec: Path, out: Path, *extra: str) -> int:
    return main(["train", str(spec), "--out", str(out), "--no-progress", *extra])


def split_of(spec: nnspec.Spec):
    t = spec.settings.train
    return load_data(t.data, spec.members[0].spec.summary(), split=t.split, seed=t.seed)


@pytest.mark.parametrize("combine", ["mean_probs", "mean_logits", "vote", "learned"])
def test_each_combine_writes_one_module_that_combines_its_members(combine, tmp_path, capsys):
    path = tiny_spec(tmp_path, combine=combine)
    assert train(path, tmp_path / "out") == 0
    out = tmp_path / "out"
    final = json.loads((out / "final.json").read_text())
    report = json.loads((out / "report.json").read_text())
    printed = json.loads(capsys.readouterr().out)
    assert printed == final and final["status"] == "completed" and final["members"] == 3
    spec = nnspec.load(path)
    model = spec.build(weights=out / "model.safetensors")   # the module, strictly loaded
    for i, member in enumerate(model.members):              # holds the members' own weights
        trained = load_file(str(out / "members" / str(i) / "model.safetensors"))
        assert all(torch.equal(v, trained[k]) for k, v in member.state_dict().items())
        row = report["members"][i]
        assert row["accuracy"] == json.loads((out / f"members/{i}/final.json").read_text())[
            "accuracy"]
        assert row["seed"] == i and row["train_samples"] == 192
    data = split_of(spec)
    objective = build_objective(spec.settings.train)
    again = evaluate(model, data.test, objective)           # the module computes the report's
    assert again["accuracy"] == pytest.approx(final["accuracy"], abs=1e-9)
    assert report["ensemble"] == pytest.approx({k: final[k] for k in again})
    assert report["combine"] == combine and report["vary"] == "bootstrap"
    assert report["member_mean"]["accuracy"] == pytest.approx(
        sum(r["accuracy"] for r in report["members"]) / 3)
    x, y = data.test.inputs[0], data.test.targets
    with torch.no_grad():
        outs = torch.stack([m.eval()(x) for m in model.members])
    if combine == "vote":   # the ensemble's answer is the class most members put first
        counts = torch.nn.functional.one_hot(outs.argmax(-1), 3).sum(0)
        assert torch.equal(model(x).argmax(-1), counts.argmax(-1))
    if combine == "learned":   # fitted on the training split: better there than equal weights
        w = torch.tensor(report["learned_weights"])
        assert torch.allclose(w, torch.softmax(model.weights.detach(), 0))
        assert not torch.allclose(w, torch.full((3,), 1 / 3), atol=1e-3)
        train_loss = lambda: evaluate(model, data.train, objective)["loss"]  # noqa: E731
        fitted = train_loss()
        with torch.no_grad():
            model.weights.zero_()
        assert fitted < train_loss()


def test_members_vary_by_bootstrap_subset_or_seed():
    x = torch.arange(100, dtype=torch.float32)[:, None]
    split = Split((x,), torch.arange(100))
    boot = vary_split(split, "bootstrap", 7).targets
    assert len(boot) == 100 and len(set(boot.tolist())) < 90          # drawn with replacement
    assert torch.equal(boot, vary_split(split, "bootstrap", 7).targets)   # from the seed
    assert not torch.equal(boot, vary_split(split, "bootstrap", 8).targets)
    half = vary_split(split, Call(name="subset", args=(0.3,)), 7)
    assert len(half) == 30 and len(set(half.targets.tolist())) == 30  # without replacement
    assert torch.equal(half.inputs[0][:, 0].long(), half.targets)      # inputs stay with targets
    assert vary_split(split, "seed", 7) is split


def test_a_stopped_ensemble_resumes_to_the_uninterrupted_result(tmp_path):
    path = tiny_spec(tmp_path, members=2, vary="subset(0.5)")
    assert train(path, tmp_path / "whole") == 0
    # stop inside member 0 (after 2 of its 6 steps, as a Ctrl-C would), then resume
    from nnspec.train import run
    spec = nnspec.load(path)
    stopped = run(spec, spec.settings.train, spec.settings.parallel, tmp_path / "stop",
                  progress=False, stop_at=2)
    assert stopped["status"] == "stopped" and stopped["step"] == 2
    stop = tmp_path / "stop"
    assert (stop / "members/0/checkpoints").is_dir() and not (stop / "model.safetensors").exists()
    assert not (stop / "members/1").exists()
    assert train(path, stop) == 2                     # not empty: --resume or --overwrite
    assert train(path, stop, "--resume") == 0
    whole, resumed = (load_file(str(p / "model.safetensors")) for p in (tmp_path / "whole", stop))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert json.loads((stop / "report.json").read_text()) == json.loads(
        (tmp_path / "whole/report.json").read_text())
    # the layout: one run's files at the top, a run's files per member below
    names = {p.relative_to(stop).as_posix() for p in stop.rglob("*")
             if "tensorboard" not in p.as_posix() and "checkpoints" not in p.as_posix()}
    assert names == {"run.json", "final.json", "model.safetensors", "report.json", "members",
                     *(f"members/{i}" for i in (0, 1)),
                     *(f"members/{i}/{f}" for i in (0, 1)
                       for f in ("final.json", "metrics.csv", "model.safetensors"))}
    # --overwrite starts over: the members' files go too, files of other names stay
    (stop / "notes.txt").write_text("mine")
    assert train(path, stop, "--overwrite") == 0
    assert (stop / "notes.txt").read_text() == "mine"
    assert not any((stop / "members/0/checkpoints").glob("step*"))


def test_settings_that_cannot_run_are_refused_before_training(tmp_path, capsys):
    path = tiny_spec(tmp_path)
    assert train(path, tmp_path / "w", "--weights", str(path)) != 0
    assert "--weights does not yet load into an ensemble" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("chosen,multi,world,expect", [
    ("auto", False, 1, "sequential"), ("auto", True, 3, "per_rank"),
    ("sequential", False, 1, "sequential"), ("per_rank", True, 3, "per_rank"),
    ("per_rank", False, 1, "3 members need 3 ranks, not 1"),
    ("per_rank", True, 2, "3 members need 3 ranks, not 2"),
    ("auto", True, 2, "the runner started 2"), ("sequential", True, 3, "the runner started 3")])
def test_placement_runs_where_the_world_allows(chosen, multi, world, expect):
    from types import SimpleNamespace

    from nnspec.train.ensemble import placement
    from nnspec.train.errors import TrainError
    spec = SimpleNamespace(members=(0, 1, 2), settings=SimpleNamespace(
        ensemble=SimpleNamespace(placement=chosen)))
    if expect in ("sequential", "per_rank"):
        assert placement(spec, multi, world) == expect
    else:
        with pytest.raises(TrainError, match=expect):
            placement(spec, multi, world)
