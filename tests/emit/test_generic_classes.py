"""model.py as people write PyTorch: one class per block with the block's parameters (and the
input sizes it is built for) as constructor arguments, the model's class with the model's
parameters, PEP 8 names, lint-clean text, and a file short enough to read."""
from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import nnspec
from nnspec.emit.blocks import signature_values
from nnspec.emit.module import load_source
from nnspec.emit.verify import GeneratedSourceError, verify_source
from nnspec.runtime import HELPERS
from tests.differential.specgen import specs

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def _source(name: str) -> str:
    return nnspec.load(SPECS / f"{name}.nn", max_params=10**12).source


def _classes(source: str) -> list[str]:
    tree = ast.parse(source)
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name not in HELPERS]


def _import(source: str, tmp_path: Path, name: str = "model"):
    """model.py imported as a file of its own, as a user would: no nnspec involved."""
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, classes", [
    ("resnet18", ["BasicBlock", "Resnet18"]),
    ("resnet50", ["Bottleneck", "Resnet50"]),
    ("densenet121", ["DenseLayer", "Transition", "Densenet121"]),
    ("gpt2_small", ["CausalSelfAttention", "MLP", "Block", "GPT2Model", "Gpt2Small"]),
])
def test_one_class_per_block(name, classes):
    assert _classes(_source(name)) == classes


def test_a_block_with_optional_structure_is_one_class_with_an_if():
    """BasicBlock with and without its downsample branch: one class, torchvision's test."""
    source = _source("resnet18")
    assert "    def __init__(self, planes, stride, in_channels):" in source
    assert "        if stride != 1:\n            self.downsample = nn.Sequential(" in source
    assert "        if self.stride != 1:\n            s = self.downsample(x)" in source
    assert "BasicBlock(128, 2, 64), BasicBlock(128, 1, 128)" in source


def test_resnet18_takes_num_classes_from_model_py_alone(tmp_path):
    module = _import(_source("resnet18"), tmp_path, "resnet18_model")
    torch.manual_seed(0)
    mine = module.Resnet18(num_classes=10).eval()
    torch.manual_seed(0)
    built = nnspec.load(SPECS / "resnet18.nn", num_classes=10).build().eval()
    a, b = mine.state_dict(), built.state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["fc.weight"].shape == (10, 512)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(mine(x), built(x))
    assert module.Model is module.Resnet18


def test_a_parameter_that_changes_structure_is_refused_by_name(tmp_path):
    """DenseNet's `growth` changes every layer's input size in a way the class cannot spell: the
    class refuses another value rather than build another network than the spec would."""
    module = _import(_source("densenet121"), tmp_path, "densenet_model")
    with pytest.raises(ValueError, match=r"^growth is fixed at 32 in this file"):
        module.Densenet121(growth=12)
    with pytest.raises(ValueError, match=r"^config is fixed"):
        module.Densenet121(config=(6, 12, 24))
    model = module.Densenet121(num_classes=7, bn_size=2)
    built = nnspec.load(SPECS / "densenet121.nn", num_classes=7, bn_size=2).build()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in built.state_dict().items()]


def test_densenet121_is_short():
    source = _source("densenet121")
    assert len(source.splitlines()) <= 400
    assert source.count("DenseLayer(") >= 58  # each use is a constructor call


def test_class_names_are_capwords():
    assert _classes(_source("char_lstm")) == ["CharLstm"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    pytest.fail("ruff is not installed: install the test extra (pip install -e '.[test]')")


def lint(files: list[Path], ignore: str = "") -> str:
    """ruff's findings (pyflakes, pycodestyle, CapWords class names, 100 columns), or ""."""
    done = subprocess.run(
        _ruff() + ["check", "--no-cache", "--isolated", "--select", "E,F,W,N801",
                   *(["--ignore", ignore] if ignore else []),
                   "--line-length", "100", "--output-format", "concise", *map(str, files)],
        capture_output=True, text=True)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_every_shipped_model_py_passes_the_linter(tmp_path):
    files = []
    for spec in sorted(SPECS.glob("*.nn")):
        path = tmp_path / f"{spec.stem}.py"
        path.write_text(_source(spec.stem), encoding="utf-8")
        files.append(path)
    assert lint(files) == ""


def test_the_linter_sees_what_it_should(tmp_path):
    """The lint test above can fail: an unused import, a long line, a lower-case class."""
    path = tmp_path / "bad.py"
    path.write_text("import math\n\n\nclass char_lstm:\n    x = '" + "a" * 100 + "'\n")
    found = lint([path])
    assert "F401" in found and "E501" in found and "N801" in found


@settings(max_examples=6, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(specs())
def test_random_specs_build_from_model_py_with_other_parameters(generated):
    """A generated spec's model.py lints clean, and its class called with another value of each
    model parameter either builds what the spec checked with that value builds (same state_dict
    and outputs), or refuses the value with a ValueError that names it."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = generated.write(Path(folder))
        spec = nnspec.load(path)
        lint_path = Path(folder) / "model_py.py"
        lint_path.write_text(spec.source, encoding="utf-8")
        # a random spec may compute a value it never uses (F841): model.py computes it too
        assert lint([lint_path], ignore="F841") == "", spec.source
        cls = load_source(spec.source)
        for name, value in signature_values(spec.ir.signature).items():
            other = (not value) if isinstance(value, bool) else value + 1
            try:
                expect = nnspec.load(path, **{name: other})
            except nnspec.SpecError:
                continue
            try:
                torch.manual_seed(0)
                mine = cls(**{name: other})
            except ValueError as err:
                assert str(err).startswith(f"{name} is fixed"), err
                continue
            torch.manual_seed(0)
            built = expect.build()
            a, b = mine.state_dict(), built.state_dict()
            assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_block_whose_uses_cannot_share_a_class_gets_a_second_one_with_a_comment():
    """Three shapes of structure (no layer, one, two) are more than one `if` expresses: the
    uses are split, visibly, and every use still builds what the spec says."""
    spec = nnspec.loads(
        "block B(k) {\n  in x\n  x -> a: linear(4) -> b: relu when k >= 1"
        " -> c: tanh when k >= 2\n}\n"
        "model m {\n  input x: float[4]\n  x -> B(0) -> B(1) -> B(2) -> B(1)\n}\n")
    source = spec.source
    assert "# A class of its own for" in source
    assert len([c for c in _classes(source) if c.startswith("B")]) >= 2
    model = spec.build()
    assert [k for k in model.state_dict()] == [
        f"{b}.a.{p}" for b in ("b", "b2", "b3", "b4") for p in ("weight", "bias")]


def test_the_verifier_allows_literal_defaults_only():
    source = _source("lenet5")
    assert "def __init__(self, num_classes=10" in source or "def __init__(self" in source
    bad = re.sub(r"def __init__\(self(.*?)\):", r"def __init__(self, x=open('f')):", source,
                 count=1)
    with pytest.raises(GeneratedSourceError):
        verify_source(bad)
    verify_source(source)


def test_a_tie_on_the_root_reaches_a_layer_inside_a_block():
    """Ties recorded on the root may name a leaf several blocks deep: the tie line walks the
    children for its path, after every child is built."""
    from nnspec.emit.source import emit_source, tie_lines
    from nnspec.ir import Leaf, ModuleDef
    from nnspec.ir.lower import lower

    spec = nnspec.loads(
        "block Head {\n  in x\n  out x -> proj: linear(50, bias=false)\n}\n"
        "block Outer {\n  in x\n  out x -> head: Head\n}\n"
        "model m {\n  input ids: long[6]\n  out ids -> wte: embedding(50, 8) -> outer: Outer\n}\n")
    root = spec.ir
    outer = dict(root.children)["outer"]
    head = dict(outer.children)["head"]
    proj = dict(head.children)["proj"]
    assert isinstance(outer, ModuleDef) and isinstance(proj, Leaf)
    root.ties.append((proj, "weight", ["wte", "weight"], root.span))
    assert tie_lines(root) == [
        f"        self.outer.head.proj.weight = self.wte.weight  # tied, {root.span.source.name}:"
        f"{root.span.line}"]
    model = load_source(emit_source(lower(root), "m.nn"))()
    assert model.outer.head.proj.weight is model.wte.weight


def _shapes(module) -> list:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


# an ensemble's class takes its members, not the model's parameters (tests/test_ensemble.py)
SINGLE = [p for p in sorted(SPECS.glob("*.nn"))
          if not re.search(r"^ensemble\s*\{", p.read_text(encoding="utf-8"), re.M)]


@pytest.mark.parametrize("path", SINGLE, ids=lambda p: p.stem)
def test_shipped_model_py_with_a_value_no_variant_tried(path):
    """The model's class was fitted on the spec's defaults and two variants per parameter: called
    with a third value it builds what the spec checked with that value builds (keys and shapes,
    on the meta device), or refuses the value by name. tiny_gpt_pipe's n_layer once got a class
    that built 11 blocks for any n_layer other than 4 (its two variants were both 11)."""
    from nnspec.emit.source import emit_source

    spec = nnspec.load(path, max_params=10**12)
    cls = load_source(spec.source)
    for name, value in signature_values(spec.ir.signature).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        other = value + 2 if isinstance(value, int) else value * 0.75
        try:
            expect = nnspec.load(path, max_params=10**12, **{name: other})
        except nnspec.SpecError:
            continue
        try:
            with torch.device("meta"):
                mine = cls(**{name: other})
        except ValueError as err:
            assert str(err).startswith(f"{name} is fixed"), err
            continue
        with torch.device("meta"):
            built = load_source(emit_source(expect.lowered, path.name))()
        assert _shapes(mine) == _shapes(built), f"{path.stem}({name}={other})"
