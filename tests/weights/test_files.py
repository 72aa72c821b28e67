"""Reading checkpoints for `Spec.build(weights=...)` and `nnspec train --weights`: safetensors,
torch state_dicts (only through the weights-only unpickler), bad files exit 2, a pickle that
would run code is refused and nothing in it runs."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import nnspec
from nnspec.train.safeload import UnsafeCheckpoint
from nnspec.weights import WeightsFileError, read_checkpoint

from .conftest import run_cli

MLP = """model mlp {
  input x: float[64]
  fc1: linear(32)
  relu
  fc2: linear(10)
}
"""
TRAIN = """
train {
  data = digits
  steps = 1
  batch_size = 16
  optimizer = sgd(lr=1e-30)
  metrics = [accuracy]
}
"""


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.randn(32, 64, generator=g), "fc1.bias": torch.randn(32, generator=g),
            "fc2.weight": torch.randn(10, 64 // 2, generator=g), "fc2.bias": torch.randn(10, generator=g)}


def _assert_loaded(model, sd):
    for k, v in sd.items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=0, rtol=0)


@pytest.mark.parametrize("form", ["safetensors", "pt", "nested"])
def test_file_forms(tmp_path, form):
    sd = _weights()
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd if form == "pt" else {"state_dict": sd, "epoch": 3}, path)
    _assert_loaded(nnspec.loads(MLP).build(weights=path), sd)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_pickle_with_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    torch.save({"fc1.weight": torch.zeros(32, 64), "x": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpoint, match="refusing to load"):
        read_checkpoint(tmp_path / "evil.pt")
    spec = tmp_path / "mlp.nn"
    spec.write_text(MLP + TRAIN)
    code, _, err = run_cli(capsys, "train", spec, "--weights", tmp_path / "evil.pt",
                           "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and "refusing to load" in err and "Traceback" not in err
    assert not marker.exists(), "the pickle's function ran"
    # the same file as a Hugging Face folder's pytorch_model.bin
    (tmp_path / "folder").mkdir()
    os.replace(tmp_path / "evil.pt", tmp_path / "folder" / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpoint):
        nnspec.loads(MLP).build(weights=tmp_path / "folder")
    assert not marker.exists()


@pytest.mark.parametrize("case", ["missing", "torn_safetensors", "torn_pt", "not_a_dict",
                                  "empty_folder", "bad_index", "shard_outside"])
def test_unreadable_weights(tmp_path, case):
    path = tmp_path / "w.pt"
    if case == "torn_safetensors":
        path = tmp_path / "w.safetensors"
        save_file(_weights(), str(path))
        path.write_bytes(path.read_bytes()[:50])
    elif case == "torn_pt":
        torch.save(_weights(), path)
        path.write_bytes(path.read_bytes()[:100])
    elif case == "not_a_dict":
        torch.save([1, 2, 3], path)
    elif case in ("empty_folder", "bad_index", "shard_outside"):
        path = tmp_path / "folder"
        path.mkdir()
        index = path / "model.safetensors.index.json"
        if case == "bad_index":
            index.write_text("{not json")
        elif case == "shard_outside":
            save_file(_weights(), str(tmp_path / "elsewhere.safetensors"))
            index.write_text('{"weight_map": {"fc1.weight": "../elsewhere.safetensors"}}')
    with pytest.raises(WeightsFileError) as err:
        read_checkpoint(path)
    assert str(path.name) in err.value.message or "--weights" in err.value.message


def test_train_cli_bad_file_exits_2(tmp_path, capsys):
    spec = tmp_path / "mlp.nn"
    spec.write_text(MLP + TRAIN)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    code, _, err = run_cli(capsys, "train", spec, "--weights", tmp_path / "junk.safetensors",
                           "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and "not a readable safetensors file" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", spec, "--weights", tmp_path / "nothing.pt",
                           "--out", tmp_path / "run2", "--no-progress")
    assert code == 2 and err.startswith("nnspec: error: --weights")


def test_train_starts_from_the_weights(tmp_path, capsys):
    """Fine-tuning: with a learning rate of 1e-30 the run's final weights are the ones given."""
    from safetensors.torch import load_file

    spec = tmp_path / "mlp.nn"
    spec.write_text(MLP + TRAIN)
    sd = _weights(seed=7)
    save_file(sd, str(tmp_path / "start.safetensors"))
    code, _, err = run_cli(capsys, "train", spec, "--weights", tmp_path / "start.safetensors",
                           "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    final = load_file(str(tmp_path / "run" / "model.safetensors"))
    for k, v in sd.items():
        torch.testing.assert_close(final[k], v, atol=1e-6, rtol=0)


def test_train_writes_a_hf_folder_for_a_spec_with_hf_config(tmp_path, capsys):
    import json

    from safetensors.torch import load_file

    spec = tmp_path / "mlp.nn"
    spec.write_text(MLP.replace("model mlp {", "model mlp(width = 32) {")
                    .replace("linear(32)", "linear(width)") + TRAIN
                    + '\nweights {\n  hf_architecture = "MyMLP"\n  hf_config = mymlp(hidden=width, '
                    'act="relu")\n  transpose = ["fc1.weight"]\n}\n')
    code, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    assert config == {"model_type": "mymlp", "architectures": ["MyMLP"], "hidden": 32,
                      "act": "relu", "torch_dtype": "float32"}
    hf = load_file(str(tmp_path / "run" / "hf" / "model.safetensors"))
    own = load_file(str(tmp_path / "run" / "model.safetensors"))
    torch.testing.assert_close(hf["fc1.weight"], own["fc1.weight"].t(), atol=0, rtol=0)
    torch.testing.assert_close(hf["fc2.weight"], own["fc2.weight"], atol=0, rtol=0)


def test_launch_passes_the_weights_to_every_rank(tmp_path, capsys):
    spec = tmp_path / "mlp.nn"
    spec.write_text(MLP + TRAIN)
    save_file(_weights(), str(tmp_path / "w.safetensors"))
    code, out, err = run_cli(capsys, "launch", spec, "--num-accelerators", "2", "--dry-run",
                             "--weights", tmp_path / "w.safetensors")
    assert code == 0, err
    assert f"--weights {tmp_path / 'w.safetensors'}" in out
    code, _, err = run_cli(capsys, "launch", spec, "--dry-run", "--weights", tmp_path / "no.pt")
    assert code == 2 and err.startswith("nnspec: error: --weights")
