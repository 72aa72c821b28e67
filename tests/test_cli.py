"""The command line and the Python API: outputs, overrides, exit codes, limits, determinism."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest
import torch

import nnspec
from nnspec.cli import main


def run(*argv):
    return main(list(argv))


def import_file(path):
    spec = importlib.util.spec_from_file_location(f"generated_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,args,inputs", [
    ("resnet18", ["--set", "size=64", "--set", "num_classes=10"], lambda: (torch.randn(2, 3, 64, 64),)),
    ("bert_base", ["--set", "layers=2", "--set", "seq=12"],
     lambda: (torch.randint(1, 30522, (2, 12)), torch.ones(2, 12, dtype=torch.long))),
    ("char_lstm", [], lambda: (torch.randint(0, 96, (2, 64)),)),
])
def test_model_py_and_build_agree(name, args, inputs, in_root, tmp_path, capsys):
    assert run("compile", f"specs/{name}.nn", "-o", str(tmp_path), *args) == 0
    generated = import_file(tmp_path / "model.py").Model().eval()
    overrides = nnspec.cli.parse_set(args[1::2])
    built = nnspec.load(f"specs/{name}.nn", **overrides).build().eval()
    a, b = generated.state_dict(), built.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    generated.load_state_dict(b, strict=True)
    built.load_state_dict(generated.state_dict(), strict=True)
    x = inputs()
    with torch.no_grad():
        out_a, out_b = generated(*x), built(*x)
    for p, q in zip(out_a if isinstance(out_a, tuple) else (out_a,),
                    out_b if isinstance(out_b, tuple) else (out_b,)):
        assert torch.equal(p, q)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["params"] == sum(p.numel() for p in built.parameters())


def test_generated_source_needs_only_torch(in_root, tmp_path):
    assert run("compile", "specs/bert_base.nn", "-o", str(tmp_path), "--set", "layers=1") == 0
    code = ("import sys, runpy; sys.modules['nnspec'] = None; "
            f"ns = runpy.run_path({str(tmp_path / 'model.py')!r}); ns['Model']()")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_outputs_are_byte_identical_across_runs(in_root, tmp_path):
    for out in ("a", "b"):
        assert run("compile", "specs/shufflenet_v2_x1_0.nn", "-o", str(tmp_path / out)) == 0
    for name in ("model.py", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_summary_json_fields(in_root, capsys):
    assert run("summary", "specs/lenet5.nn", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert {"params", "trainable_params", "flops", "layers"} <= set(data)
    assert data["params"] == 19_754
    names = [row["name"] for row in data["layers"]]
    assert names[:3] == ["conv1", "(relu)", "pool1"]
    assert sum(r["params"] for r in data["layers"] if r["depth"] == 0) == data["params"]
    assert sum(r["flops"] for r in data["layers"] if r["depth"] == 0) == data["flops"]


def test_summary_table(in_root, capsys):
    assert run("summary", "specs/resnet18.nn") == 0
    out = capsys.readouterr().out
    assert "layer2.0.downsample.0" in out and "Total params: 11,689,512" in out


def test_set_overrides_and_checks_values(in_root, capsys):
    assert run("check", "specs/resnet18.nn", "--set", "num_classes=10") == 0
    assert "11,181,642 parameters" in capsys.readouterr().out
    assert run("check", "specs/resnet18.nn", "--set", "num_clases=10") == 1
    err = capsys.readouterr().err
    assert "has no parameter `num_clases`" in err and "did you mean `num_classes`" in err
    assert run("check", "specs/resnet18.nn", "--set", "num_classes=0") == 1
    assert "invalid `out_features` for linear" in capsys.readouterr().err


def test_set_reads_values_as_the_spec_does(in_root, tmp_path, capsys):
    """Lists and calls on the command line, checked like the spec's own settings."""
    assert run("compile", "specs/resnet18.nn", "-o", str(tmp_path), "--set",
               "parallel.pipeline_stages=2", "--set", "parallel.stage_boundaries=[layer3]",
               "--set", "train.optimizer=sgd(lr=0.1, momentum=0.9)") == 0
    ds = json.loads((tmp_path / "ds_config.json").read_text())
    assert ds["optimizer"]["params"]["momentum"] == 0.9
    assert run("check", "specs/resnet18.nn", "--set", "parallel.pipeline_stages=2",
               "--set", 'parallel.stage_boundaries=["layer3.1"]') == 0
    assert run("check", "specs/resnet18.nn", "--set", "parallel.pipeline_stages=2",
               "--set", "parallel.stage_boundaries=[layer9]") == 1
    assert "no layer `layer9`" in capsys.readouterr().err


@pytest.mark.parametrize("sets,message", [
    (["novalue"], "--set expects NAME=VALUE, got `novalue`"),
    (["1a=2"], "--set expects NAME=VALUE, got `1a=2`"),
    (["num_classes=10", "train.data=npz("], "--set train.data: cannot read `npz(`: unclosed `(`"),
])
@pytest.mark.parametrize("command", [["check"], ["plan", "--gpus", "2"]])
def test_set_usage_errors_name_the_item(command, sets, message, in_root, capsys):
    """A bad --set is a one-line usage error, the same from every command that reads them."""
    argv = [command[0], "specs/resnet18.nn", *command[1:]]
    for item in sets:
        argv += ["--set", item]
    assert run(*argv) == 2
    assert capsys.readouterr().err == f"nnspec: error: {message}\n"


def test_parse_set_reads_items_as_values():
    from nnspec.lang.config import Call
    from nnspec.lang.sections import parse_set

    assert parse_set(["a=1", " b = [x, 2] ", 'train.data=npz("d.npz")']) == {
        "a": 1, "b": ("x", 2), "train.data": Call(name="npz", args=("d.npz",))}
    with pytest.raises(ValueError, match="^--set b: cannot read `1 2`: "):
        parse_set(["a=1", "b=1 2"])


@pytest.mark.parametrize("argv", [
    ["check", "specs/missing.nn"],
    ["check", "specs/resnet18.nn", "--set", "novalue"],
    ["check", "specs/resnet18.nn", "--set", "train.optimizer=adamw(lr=1e-3"],
    ["compile", "specs/resnet18.nn"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(argv, in_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = run(*argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_failed_compile_keeps_previous_outputs(in_root, tmp_path):
    assert run("compile", "specs/lenet5.nn", "-o", str(tmp_path)) == 0
    before = (tmp_path / "model.py").read_bytes()
    assert run("compile", "specs/lenet5.nn", "-o", str(tmp_path), "--set", "num_classes=-1") == 1
    assert (tmp_path / "model.py").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".nnspec-output.json", "ds_config.json",
                                                          "launch.sh", "model.py", "summary.json"]


def test_parameter_limit_refuses_fast_without_allocating(in_root):
    text = """
model huge {
  input x: float[100000]
  fc1: linear(100000)
  fc2: linear(100000)
  fc3: linear(100000)
}
"""
    t0 = time.perf_counter()
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="huge.nn")
    assert time.perf_counter() - t0 < 0.5
    assert "E0501" in str(err.value) and "10,000,000,000" in str(err.value)
    # the limit is a flag: raised, the same spec checks (and reports 30 billion parameters)
    spec = nnspec.loads(text, name="huge.nn", max_params=40_000_000_000)
    assert spec.summary()["params"] == 3 * (100000 * 100000 + 100000)


def test_a_spec_cannot_smuggle_code(in_root, tmp_path):
    hostile = 'model m {\n  input x: float[4]\n  pad(pad=[1, 1], mode="constant\\"); import os; (\\"")\n}\n'
    with pytest.raises(nnspec.SpecError):
        nnspec.loads(hostile)
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads('model m {\n  input x: float[4]\n  __import__("os")\n}\n')
    assert "unknown name `__import__`" in str(err.value)


def test_check_prints_spec_strings_escaped(tmp_path, capsys):
    """A string argument reaches the terminal as data: an escape sequence (here one that clears
    the screen) and a line break are printed as their escapes."""
    spec = tmp_path / "esc.nn"
    spec.write_text('model m(p = "a\\x1b[2J\\nb") {\n  input x: float[4]\n  out x -> relu\n}\n')
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1
    assert 'p="a\\x1b[2J\\nb"' in out


def test_a_reader_that_leaves_early_gets_no_traceback(in_root):
    """`nnspec summary ... | head -1`: the pipe closes while nnspec still writes (the table is
    larger than a pipe's buffer, so the write must fail)."""
    proc = subprocess.Popen([sys.executable, "-m", "nnspec.cli", "summary", "specs/gpt3_13b.nn",
                             "--json", "--max-params", str(10**12)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()   # the reader is gone before the rest of the table is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
