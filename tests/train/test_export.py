"""`nnspec export-weights` on one-process checkpoints: the exported weights load strictly into the
spec's model and give the run's own outputs; tied weights; every bad input exits 2 with a message
and writes nothing. DeepSpeed checkpoints (ZeRO 2 and 3) are exported in test_distributed.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main
from nnspec.train import run

from .conftest import ROOT, sections

TIED = """model tied(num_classes = 10) {
  input x: float[1, 8, 8]
  flatten
  fc1: linear(64)
  relu
  fc2: linear(64, tie=fc1)    # the same 64x64 weight twice
  relu
  fc3: linear(num_classes)
}
"""


def export(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["export-weights", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def outputs(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.randn(16, 1, 8, 8))


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """A short one-process lenet5 run with checkpoints at steps 10 and 20 (its end)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lenet5")
    train, parallel = sections(steps=20, checkpoint_every=10, optimizer=("adamw", {"lr": 3e-3}))
    run(nnspec.load(ROOT / "specs/lenet5.nn"), train, parallel, out, progress=False)
    return out


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
@pytest.mark.parametrize("which", ["file", "checkpoints", "run"])
def test_export_loads_strictly_and_matches_the_run(lenet_run, tmp_path, capsys, in_root, suffix,
                                                   which):
    ckpt = {"file": lenet_run / "checkpoints" / "step-00000020.pt",
            "checkpoints": lenet_run / "checkpoints", "run": lenet_run}[which]
    target = tmp_path / f"model.{suffix}"
    code, out, err = export(capsys, ckpt, "-o", target, "--spec", "specs/lenet5.nn")
    assert code == 0, err
    assert "step-00000020.pt" in out  # the newest checkpoint, the run's last step
    weights = load_file(target) if suffix == "safetensors" else \
        torch.load(target, weights_only=True)
    assert all(v.dtype == torch.float32 for v in weights.values())
    spec = nnspec.load(ROOT / "specs/lenet5.nn")
    exported, trained = spec.build(), spec.build()
    exported.load_state_dict(weights, strict=True)
    trained.load_state_dict(load_file(lenet_run / "model.safetensors"), strict=True)
    assert torch.equal(outputs(exported), outputs(trained))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind


def test_an_older_checkpoint_exports_its_own_step(lenet_run, tmp_path, capsys):
    code, _, err = export(capsys, lenet_run / "checkpoints" / "step-00000010.pt", "-o",
                          tmp_path / "m.safetensors")
    assert code == 0, err
    older = load_file(tmp_path / "m.safetensors")
    final = load_file(lenet_run / "model.safetensors")
    assert older.keys() == final.keys() and not torch.equal(older["fc3.weight"],
                                                             final["fc3.weight"])


def test_tied_weights_export_to_safetensors(tmp_path, capsys):
    (tmp_path / "tied.nn").write_text(TIED)
    spec = nnspec.load(tmp_path / "tied.nn")
    train, parallel = sections(steps=5, checkpoint_every=5)
    run(spec, train, parallel, tmp_path / "run", progress=False)
    code, _, err = export(capsys, tmp_path / "run" / "checkpoints", "-o",
                          tmp_path / "tied.safetensors", "--spec", tmp_path / "tied.nn")
    assert code == 0, err
    weights = load_file(tmp_path / "tied.safetensors")  # both names, as the state_dict has them
    assert sorted(weights) == sorted(spec.build().state_dict())  # safetensors sorts names
    assert torch.equal(weights["fc1.weight"], weights["fc2.weight"])
    model = spec.build()
    model.load_state_dict(weights, strict=True)
    assert model.fc1.weight is model.fc2.weight  # still tied after the load
    trained = spec.build()
    trained.load_state_dict(load_file(tmp_path / "run" / "model.safetensors"), strict=True)
    assert torch.equal(outputs(model), outputs(trained))


def test_a_wrapper_prefix_is_dropped(lenet_run, tmp_path, capsys, in_root):
    payload = torch.load(lenet_run / "checkpoints" / "step-00000020.pt", weights_only=True)
    payload["model"] = {f"module.{k}": v for k, v in payload["model"].items()}
    torch.save(payload, tmp_path / "step-00000020.pt")
    code, _, err = export(capsys, tmp_path / "step-00000020.pt", "-o", tmp_path / "m.pt",
                          "--spec", "specs/lenet5.nn")
    assert code == 0, err
    assert list(torch.load(tmp_path / "m.pt")) == \
        list(nnspec.load(ROOT / "specs/lenet5.nn").build().state_dict())


def bad_inputs(tmp_path: Path, lenet_run: Path) -> dict[str, tuple[list, str]]:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": [1, 2, 3]}, foreign)
    empty = tmp_path / "empty"
    empty.mkdir()
    cut = tmp_path / "cut" / "step-00000030"  # a DeepSpeed save killed before its marker
    cut.mkdir(parents=True)
    (cut / "mp_rank_00_model_states.pt").write_bytes(b"half")
    torn = tmp_path / "torn" / "checkpoints"
    torn.mkdir(parents=True)
    (torn / "step-00000040.pt").write_bytes(b"torn")
    pipe = tmp_path / "pipe" / "step-00000050"  # DeepSpeed's pipeline layout: one file per layer
    pipe.mkdir(parents=True)
    for name in ("mp_rank_00_model_states.pt", "layer_00-model_states.pt", "nnspec.json"):
        (pipe / name).write_text("{}")
    ckpt = lenet_run / "checkpoints" / "step-00000020.pt"
    return {
        "missing": ([tmp_path / "nope", "-o"], "no such checkpoint"),
        "not a torch file": ([junk, "-o"], "is not a readable checkpoint"),
        "foreign torch file": ([foreign, "-o"], "is not a checkpoint written by `nnspec train`"),
        "empty folder": ([empty, "-o"], "no checkpoint in"),
        "incomplete DeepSpeed folder": ([cut, "-o"], "is an incomplete checkpoint"),
        "only incomplete ones": ([cut.parent, "-o"], "no complete checkpoint in"),
        "only damaged ones": ([torn, "-o"], "no readable checkpoint in"),
        "pipeline checkpoint": ([pipe, "-o"], "is a pipeline checkpoint"),
        "wrong spec": ([ckpt, "--spec", "specs/digits_mlp.nn", "-o"],
                       "the checkpoint does not fit digits_mlp"),
        "unknown format": ([ckpt, "-o"], "cannot tell the format"),
    }


@pytest.mark.parametrize("case", ["missing", "not a torch file", "foreign torch file",
                                  "empty folder", "incomplete DeepSpeed folder",
                                  "only incomplete ones", "only damaged ones",
                                  "pipeline checkpoint", "wrong spec",
                                  "unknown format"])
def test_bad_input_exits_2_with_a_message_and_no_file(lenet_run, tmp_path, capsys, in_root,
                                                      case):
    args, message = bad_inputs(tmp_path, lenet_run)[case]
    target = tmp_path / "out" / ("model.onnx" if case == "unknown format" else "m.safetensors")
    code, out, err = export(capsys, *args, target)
    assert code == 2, (out, err)
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_newest_complete_checkpoint_is_chosen_over_cut_and_torn_ones(lenet_run, tmp_path, capsys,
                                                                    caplog):
    folder = tmp_path / "checkpoints"
    shutil.copytree(lenet_run / "checkpoints", folder)
    (folder / "step-00000030").mkdir()  # a DeepSpeed-style save cut short: no nnspec.json
    (folder / "step-00000030" / "mp_rank_00_model_states.pt").write_bytes(b"half")
    (folder / "step-00000025.pt").write_bytes(b"torn")  # a damaged file: passed over
    (folder / ".step-00000040.pt.123.tmp").write_bytes(b"a save in progress")
    code, out, err = export(capsys, folder, "-o", tmp_path / "m.safetensors")
    assert code == 0, err
    assert "step-00000020.pt" in out and "skipping" in caplog.text
    exported = load_file(tmp_path / "m.safetensors")
    final = load_file(lenet_run / "model.safetensors")
    assert exported.keys() == final.keys()
    assert all(torch.equal(exported[k], final[k]) for k in final)
