"""A checkpoint that does not fit the model: every missing, unexpected and mis-shaped key is a
located E0741 diagnostic (at the weights section, else the model line), capped and counted;
the command exits 1 and writes nothing."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import nnspec
from nnspec.lang.diagnostics import MAX_ERRORS, SpecError

from .conftest import run_cli

SPEC = """model mlp {
  input x: float[64]
  fc1: linear(32)
  relu
  fc2: linear(10)
}

weights {
  rename = [["^encoder\\\\.", ""]]
  drop = ["*.num_batches_tracked"]
}
"""


def _save(tmp_path, sd):
    save_file(sd, str(tmp_path / "w.safetensors"))
    return tmp_path / "w.safetensors"


def test_missing_unexpected_and_misshaped_keys(tmp_path):
    path = _save(tmp_path, {"encoder.fc1.weight": torch.zeros(64, 32),   # transposed
                            "encoder.fc1.bias": torch.zeros(32),
                            "encoder.fc2.weight": torch.zeros(10, 16),   # other sizes
                            "encoder.head.weight": torch.zeros(3),
                            "bn.num_batches_tracked": torch.tensor(3)})
    with pytest.raises(SpecError) as err:
        nnspec.loads(SPEC, name="mlp.nn").build(weights=path)
    text = err.value.render()
    assert "`fc1.weight` has shape [32, 64] in the model, [64, 32] in w.safetensors" in text
    assert "stores it transposed: add it to `transpose`" in text
    assert "`fc2.weight` has shape [10, 32] in the model, [10, 16]" in text
    assert "`fc2.bias` is missing from w.safetensors" in text
    assert "w.safetensors holds `head.weight`, which the model does not have" in text
    assert "num_batches_tracked" not in text  # dropped
    assert "--> mlp.nn:8:1" in text  # the weights section
    assert all(d.code == "E0741" for d in err.value.diagnostics)
    assert text.endswith("4 errors found")


def test_without_a_section_the_model_line_is_pointed_at(tmp_path):
    path = _save(tmp_path, {"fc1.weight": torch.zeros(32, 64)})
    spec = nnspec.loads(SPEC.split("weights")[0], name="mlp.nn")
    with pytest.raises(SpecError) as err:
        spec.build(weights=path)
    assert "--> mlp.nn:1:1" in err.value.render()


def test_many_mismatches_are_capped_and_counted(tmp_path):
    layers = "\n".join(f"  fc{i}: linear(4)" for i in range(30))
    spec = nnspec.loads(f"model deep {{\n  input x: float[4]\n{layers}\n}}\n")
    path = _save(tmp_path, {"other.weight": torch.zeros(1)})
    with pytest.raises(SpecError) as err:
        spec.build(weights=path)
    assert len(err.value.diagnostics) == MAX_ERRORS
    assert err.value.render().endswith(f"... and {61 - MAX_ERRORS} more\n\n61 errors found")


def test_cli_mismatch_exits_1_and_writes_no_run(tmp_path, capsys):
    spec = tmp_path / "mlp.nn"
    spec.write_text(SPEC + "\ntrain {\n  data = digits\n  steps = 1\n}\n")
    path = _save(tmp_path, {"encoder.fc1.weight": torch.zeros(32, 64)})
    code, _, err = run_cli(capsys, "train", spec, "--weights", path, "--out", tmp_path / "run",
                           "--no-progress")
    assert code == 1 and "error[E0741]" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
