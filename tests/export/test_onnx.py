"""`nnspec export SPEC --onnx`: the file onnxruntime runs computes what the PyTorch module does,
with a dynamic batch and the spec's names; failures name the layer; outputs appear whole."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.export import onnx_file
from nnspec.export.inputs import draw_inputs

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SMALL_BERT = ["layers=1", "hidden=32", "heads=2", "intermediate_size=64", "seq=8",
              "vocab_size=50"]
UNEXPORTABLE = """model pooled() {
  input x: float[3, 7, 7]
  conv: conv2d(3, 1)
  pool: adaptive_maxpool2d(3)
  relu
}
"""


def export(spec_path, out, *extra):
    argv = ["export", str(spec_path), "--onnx", str(out), *extra]
    return main(argv)


def sets(values):
    return [a for v in values for a in ("--set", v)]


def onnxruntime_agrees(path: Path, spec, module, batch: int = 5, seed: int = 7):
    """Run the file and the module on a batch of another size than any the export used."""
    xs = draw_inputs(spec.ir, torch.Generator().manual_seed(seed), batch, torch.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), xs)})
    with torch.no_grad():
        want = module.eval()(*xs)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape) and g.shape[0] == batch
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-3)
    return session


def seeded_module(spec):
    torch.manual_seed(onnx_file.SEED)
    return spec.build()


@pytest.mark.parametrize("name,values", [
    ("lenet5", []),
    ("resnet18", ["size=32", "num_classes=10"]),
    ("tiny_gpt_pipe", []),
])
def test_shipped_specs_export_and_onnxruntime_computes_the_module(tmp_path, capsys, name, values):
    out = tmp_path / f"{name}.onnx"
    assert export(SPECS / f"{name}.nn", out, *sets(values)) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime matches PyTorch" in printed and "atol" in printed and "rtol" in printed
    spec = nnspec.load(SPECS / f"{name}.nn", **{k: int(v) for k, v in
                                               (s.split("=") for s in values)})
    session = onnxruntime_agrees(out, spec, seeded_module(spec))
    assert [i.name for i in session.get_inputs()] == spec.ir.input_names
    assert [o.name for o in session.get_outputs()] == ["output"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch


def test_several_inputs_and_outputs_keep_the_specs_names(tmp_path):
    out = tmp_path / "bert.onnx"
    assert export(SPECS / "bert_base.nn", out, *sets(SMALL_BERT)) == 0
    spec = nnspec.load(SPECS / "bert_base.nn", **{k: int(v) for k, v in
                                                  (s.split("=") for s in SMALL_BERT)})
    session = onnxruntime_agrees(out, spec, seeded_module(spec))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["h", "pooled"]  # `out h, pooled`
    assert [i.type for i in session.get_inputs()] == ["tensor(int64)"] * 2


def test_unnamed_outputs_are_numbered():
    spec = nnspec.loads("model two() {\n  input x: float[4]\n  a = x -> linear(3)\n"
                        "  out a -> relu, a -> tanh\n}\n")
    assert onnx_file.output_names(spec) == ["output0", "output1"]
    spec = nnspec.loads("model same() {\n  input x: float[4]\n  out x\n}\n")
    assert onnx_file.output_names(spec) == ["output"]  # an input's name cannot name an output


def test_weights_are_the_files(tmp_path):
    from safetensors.torch import save_file

    spec = nnspec.load(SPECS / "digits_mlp.nn")
    torch.manual_seed(123)
    trained = spec.build()
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, tmp_path / "w.st")
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.st").read_bytes())
    out = tmp_path / "mlp.onnx"
    assert export(SPECS / "digits_mlp.nn", out, "--weights", str(tmp_path / "w.safetensors")) == 0
    onnxruntime_agrees(out, spec, trained)
    with pytest.raises(AssertionError):  # not the seeded random init
        onnxruntime_agrees(out, spec, seeded_module(spec))


def test_a_kind_the_exporter_cannot_translate_is_named_with_its_line(tmp_path, capsys):
    spec = tmp_path / "pooled.nn"
    spec.write_text(UNEXPORTABLE)
    out = tmp_path / "pooled.onnx"
    assert export(spec, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("nnspec: error: ")
    assert f"{spec}:4:9" in err and "`adaptive_maxpool2d`" in err and "Traceback" not in err
    assert not out.exists() and os.listdir(tmp_path) == ["pooled.nn"]


def test_the_command_end_to_end(tmp_path):
    out = tmp_path / "lenet5.onnx"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "nnspec.cli", "export", "specs/lenet5.nn",
                           "--onnx", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out} (opset ")
    assert "x [batch, 1, 8, 8] float32; output [batch, 10] float32" in proc.stdout
    assert "[torch.onnx]" not in proc.stdout + proc.stderr  # the exporter's progress is quiet
    spec = nnspec.load(SPECS / "lenet5.nn")
    onnxruntime_agrees(out, spec, seeded_module(spec))
    # an earlier export is replaced; the marker says nnspec wrote it
    again = subprocess.run([sys.executable, "-m", "nnspec.cli", "export", "specs/digits_mlp.nn",
                            "--onnx", str(out)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    marker = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert marker[onnx_file.MARKER_KEY].endswith("specs/digits_mlp.nn")
    assert sorted(os.listdir(tmp_path)) == ["lenet5.onnx"]  # no temporary file left


@pytest.mark.parametrize("make,words", [
    (lambda p: p.write_bytes(b"my notes"), "is not an ONNX file written by nnspec"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.symlink_to(p.parent / "elsewhere.onnx"), "symbolic link"),
])
def test_other_files_are_never_replaced(tmp_path, capsys, make, words):
    out = tmp_path / "model.onnx"
    make(out)
    before = sorted(os.listdir(tmp_path))
    assert export(SPECS / "lenet5.nn", out) == 2
    assert words in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before
    if out.is_file() and not out.is_symlink():
        assert out.read_bytes() == b"my notes"


def test_missing_folders_are_made(tmp_path):
    out = tmp_path / "new" / "sub" / "mlp.onnx"
    assert export(SPECS / "digits_mlp.nn", out) == 0
    assert onnx_file.is_nnspec_export(out)


def test_a_foreign_onnx_file_is_refused(tmp_path, capsys):
    out = tmp_path / "theirs.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2).eval(), (torch.randn(2, 2),), str(out), dynamo=True,
                      verbose=False)
    before = out.read_bytes()
    assert export(SPECS / "digits_mlp.nn", out) == 2
    assert "not an ONNX file written by nnspec" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_mismatch_fails_and_writes_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mlp.onnx"
    assert export(SPECS / "lenet5.nn", out) == 0
    before = out.read_bytes()
    real = onnx_file.run_onnxruntime
    monkeypatch.setattr(onnx_file, "run_onnxruntime",
                        lambda path, feeds: [g + 0.01 for g in real(path, feeds)])
    assert export(SPECS / "digits_mlp.nn", out) == 2
    err = capsys.readouterr().err
    assert "onnxruntime's output `output` differs from PyTorch's" in err and "atol" in err
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["mlp.onnx"]


def test_opset(tmp_path, capsys):
    out = tmp_path / "bert.onnx"
    assert export(SPECS / "bert_base.nn", out, "--opset", "18", *sets(SMALL_BERT)) == 0
    assert "(opset 18)" in capsys.readouterr().out
    assert onnx_file._opset_of(onnx.load(str(out))) == 18
    # LayerNormalization has no opset before 17: the exporter keeps 18, which must not pass
    assert export(SPECS / "bert_base.nn", tmp_path / "old.onnx", "--opset", "13",
                  *sets(SMALL_BERT)) == 2
    assert "could not convert this model to opset 13" in capsys.readouterr().err
    assert not (tmp_path / "old.onnx").exists()
    assert export(SPECS / "lenet5.nn", out, "--opset", "3") == 2
    assert "--opset must be" in capsys.readouterr().err


def test_without_the_onnx_extra_the_command_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(onnx_file, "missing_packages", lambda: ["onnxscript"])
    assert export(SPECS / "lenet5.nn", tmp_path / "m.onnx") == 2
    assert "--onnx needs onnxscript: pip install 'nnspec[onnx]'" in capsys.readouterr().err


def test_missing_weights_is_a_usage_error(tmp_path, capsys):
    assert export(SPECS / "lenet5.nn", tmp_path / "m.onnx", "--weights", "nope.pt") == 2
    assert "--weights nope.pt: no such file" in capsys.readouterr().err


def test_a_failure_inside_a_block_is_traced_to_its_layer():
    from nnspec.export.locate import _functional_at, find_child

    spec = nnspec.loads("block B() {\n  in x\n  out x -> fc: linear(4) -> relu\n}\n"
                        "model m() {\n  input x: float[4]\n  body: [B(), B()]\n}\n", name="n.nn")
    assert find_child(spec.ir, "body.1.fc").kind == "linear"
    assert find_child(spec.ir, "body.7") is None
    lines = spec.source.splitlines()
    relu = next(i for i, line in enumerate(lines, 1) if "relu" in line and "n.nn:3" in line
                and "=" in line)
    kind, where = _functional_at(spec.ir, spec.source, relu)
    assert kind == "relu" and where.startswith("n.nn:3:")
