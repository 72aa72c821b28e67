"""A plugin's layer kind works like nnspec's own: it checks, compiles, builds, computes the right
numbers, is listed by `nnspec layers` and passes the differential harness. The plugin is
tests/plugins/glu, installed by pip (conftest.py); these tests only use it, as a user does."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.emit.reference import reference_markdown
from nnspec.emit.verify import verify_source
from nnspec.layers import REGISTRY
from tests.differential.harness import check_spec

NET = """
model glu_net(hidden = 16) {
  input x: float[8]
  fc1: gated_linear(hidden)
  fc2: linear(4)
}
"""


def test_kind_checks_with_its_shape_params_and_flops(glu):
    spec = nnspec.loads(NET)
    summary = spec.summary()
    # fc1: W [32, 8] + b [32]; fc2: [4, 16] + [4]
    assert summary["params"] == (32 * 8 + 32) + (4 * 16 + 4)
    assert summary["flops"] == 2 * 8 * 32 + 2 * 16 * 4
    rows = {row["name"]: row for row in summary["layers"]}
    assert rows["fc1"]["params"] == 32 * 8 + 32


def test_bad_arguments_and_shapes_are_located_diagnostics(glu):
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads("model m {\n  input x: float[8]\n  fc: gated_linear(0)\n}\n", name="m.nn")
    text = err.value.render()
    assert "m.nn:3:" in text and "gated_linear" in text and "Traceback" not in text
    assert "^" in text  # a caret under the argument


def test_forward_computes_a_gated_linear_unit(glu):
    spec = nnspec.loads(NET)
    model = spec.build().eval()
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    w, b = model.fc1.proj.weight, model.fc1.proj.bias
    a, g = x @ w[:16].T + b[:16], x @ w[16:].T + b[16:]
    hidden = a * (1 / (1 + torch.exp(-g)))
    want = hidden @ model.fc2.weight.T + model.fc2.bias
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)
    assert set(model.state_dict()) == {"fc1.proj.weight", "fc1.proj.bias", "fc2.weight",
                                       "fc2.bias"}


def test_generated_code_imports_the_plugin_module_and_verifies(glu):
    source = nnspec.loads(NET).source
    assert "\nimport nnspec_example_glu.modules\n" in source
    # the model parameter `hidden` (16) is an argument of the model class
    assert "self.fc1 = nnspec_example_glu.modules.GatedLinear(8, hidden)" in source
    assert "Needs PyTorch and the plugin modules imported below." in source
    verify_source(source)
    # a spec without plugin kinds imports no plugin, even with plugins installed
    plain = nnspec.loads("model m {\n  input x: float[8]\n  fc: linear(2)\n}\n").source
    assert "nnspec_example_glu" not in plain and "Needs only PyTorch." in plain


def test_model_py_runs_with_torch_and_the_plugin_alone(glu, tmp_path):
    spec_file = tmp_path / "glu_net.nn"
    spec_file.write_text(NET, encoding="utf-8")
    assert main(["compile", str(spec_file), "-o", str(tmp_path / "out")]) == 0
    result = tmp_path / "result.pt"
    script = ("import sys; sys.modules['nnspec'] = None  # model.py must not need nnspec\n"
              "import torch, model\n"
              "torch.manual_seed(0)\n"
              "m = model.Model().eval()\n"
              "x = torch.randn(3, 8)\n"
              f"torch.save({{'state': m.state_dict(), 'x': x, 'y': m(x)}}, {str(result)!r})\n")
    env = {"PYTHONPATH": f"{tmp_path / 'out'}:{glu}", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                   cwd=tmp_path)
    saved = torch.load(result, weights_only=True)
    model = nnspec.load(spec_file).build().eval()
    model.load_state_dict(saved["state"], strict=True)
    torch.testing.assert_close(model(saved["x"]), saved["y"])


def test_nnspec_layers_lists_the_plugin_kind_with_its_source(glu, capsys):
    origin = "From plugin `glu` of nnspec-example-glu 0.1.0, module nnspec_example_glu.kinds."
    assert main(["layers"]) == 0
    listing = capsys.readouterr().out
    assert "- **`gated_linear(out_features, bias=true)`**" in listing and origin in listing
    assert "- **`linear(out_features, bias=true)`**" in listing
    assert main(["layers", "gated_linear"]) == 0
    one = capsys.readouterr().out
    assert origin in one and "`out_features` (int): size of each output sample" in one
    assert "conv2d" not in one
    # the generated layer reference documents nnspec's own kinds only
    assert "gated_linear" not in reference_markdown() and "gated_linear" in REGISTRY


def test_unknown_kind_on_the_command_line_is_a_usage_error(glu, capsys):
    assert main(["layers", "gated_linaer"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnspec: error: no layer kind `gated_linaer`: did you mean "
                          "`gated_linear`?") and err.count("\n") == 1


BLOCKS = """
block Gate(width) {
  in x
  y = x -> gated_linear(width, bias=false)
  out y + x
}

model glu_mixer(width = 6) {
  input x: float[5, 6]
  mix: [Gate(width), Gate(width)]
  head: gated_linear(3)
}
"""


@pytest.mark.parametrize("text", [NET, BLOCKS], ids=["chain", "blocks"])
def test_differential_harness_with_the_plugins_interpreter_rule(glu, text):
    report = check_spec(nnspec.loads(text))
    assert report["params"] > 0 and report["flops"] > 0


def test_a_value_named_like_the_plugin_module_does_not_shadow_it(glu):
    spec = nnspec.loads("model m {\n  input x: float[8]\n  nnspec_example_glu = x -> relu\n"
                        "  fc: gated_linear(4)\n}\n")
    assert "nnspec_example_glu_ = torch.relu(x)" in spec.source
    assert "nnspec_example_glu =" not in spec.source  # the module's name stays the module
    assert spec.build()(torch.randn(2, 8)).shape == (2, 4)
