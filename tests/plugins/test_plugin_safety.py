"""Plugins add layer kinds without letting a spec run code: a spec only looks kinds up, so it can
neither import a plugin nor widen what generated code may import; a broken plugin costs one line
on stderr and leaves every other kind working."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import nnspec
from nnspec.cli import main
from nnspec.emit.verify import GeneratedSourceError, verify_source
from nnspec.layers import REGISTRY
from nnspec.layers.linear import Linear

from .conftest import HERE, ROOT_PATH, on_path

USES_GLU = "model m {\n  input x: float[8]\n  fc: gated_linear(4)\n}\n"


def render(text: str) -> str:
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="m.nn")
    return err.value.render()


def test_an_unregistered_kind_gets_did_you_mean_nnspec_layers_and_plugins():
    text = render(USES_GLU)
    assert "error[E0201]: unknown name `gated_linear`" in text
    assert ("help: did you mean `linear` or `bilinear`? `nnspec layers` lists every layer kind, "
            "those of installed plugins too") in text
    far = render("model m {\n  input x: float[8]\n  fc: glu_xyz(4)\n}\n")
    assert "a new kind comes only from a Python plugin (docs/plugins.md)" in far


def test_a_spec_cannot_import_a_module_by_naming_it(tmp_path):
    # the plugin's code is importable (on sys.path) but not installed: no entry point names it
    shutil.copytree(HERE / "glu" / "nnspec_example_glu", tmp_path / "nnspec_example_glu")
    with on_path(tmp_path):
        for name in ("gated_linear", "nnspec_example_glu", "kinds", "modules"):
            text = render(USES_GLU.replace("gated_linear", name))
            assert f"unknown name `{name}`" in text and "nnspec layers" in text
        dotted = render(USES_GLU.replace("gated_linear", "nnspec_example_glu.kinds.GatedLinear"))
        assert "error[" in dotted
        assert not [m for m in sys.modules if m.startswith("nnspec_example_glu")]
        assert "gated_linear" not in REGISTRY


def test_generated_code_may_import_only_what_registered_kinds_declared(glu):
    source = nnspec.loads(USES_GLU).source
    verify_source(source)
    line = "import nnspec_example_glu.modules\n"
    for bad in ("import os\n", "import nnspec_example_glu\n",
                "import nnspec_example_glu.modules as nn\n",
                "from nnspec_example_glu import modules\n",
                "import nnspec_example_glu.interp\n"):
        with pytest.raises(GeneratedSourceError):
            verify_source(source.replace(line, bad))


def test_without_the_plugin_its_import_is_refused(glu):
    source = nnspec.loads(USES_GLU).source
    REGISTRY.forget_plugins()
    sys.path.remove(str(glu))  # the plugin is no longer installed
    try:
        with pytest.raises(GeneratedSourceError, match="import of nnspec_example_glu.modules"):
            verify_source(source)
    finally:
        sys.path.insert(0, str(glu))
        REGISTRY.forget_plugins()


def test_broken_plugins_are_one_line_each_and_the_rest_still_work(glu_and_broken, capsys):
    assert "linear" in REGISTRY  # the first read loads every plugin
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines) == [
        "nnspec: error: plugin `clash` (nnspec-broken-plugin 0.1.0): `imports` entry 'os' of "
        "kind `sneaky` is not a module of its own package `nnspec_broken_plugin`; generated code "
        "may import only the plugin's own modules",
        "nnspec: error: plugin `clash` (nnspec-broken-plugin 0.1.0): layer kind `linear` is "
        "already built into nnspec; give the plugin's kind another name",
        "nnspec: error: plugin `missing` (nnspec-broken-plugin 0.1.0) failed to load: "
        "ModuleNotFoundError: No module named 'nnspec_broken_plugin.nowhere'; its layer kinds "
        "are skipped",
        "nnspec: error: plugin `not_a_layer` (nnspec-broken-plugin 0.1.0) failed to load: "
        "PluginError: the entry point names {'not': 'a layer kind'}, which is neither a module "
        "nor a subclass of nnspec.layers.Layer; its layer kinds are skipped"]
    assert REGISTRY["linear"] is Linear and "sneaky" not in REGISTRY
    assert str(REGISTRY.origin("pass_through")) == (
        "plugin `fine` of nnspec-broken-plugin 0.1.0, module nnspec_broken_plugin.clash")
    model = nnspec.loads(USES_GLU.replace("}", "  pass_through\n}")).build()
    assert [n for n, _ in model.named_children()] == ["fc", "pass_through"]
    assert capsys.readouterr().err == ""  # said once per process, not at every read
    text = render(USES_GLU.replace("gated_linear", "sneaky"))
    assert "plugin `clash` and `missing` and `not_a_layer` failed to load" in text


def test_the_command_line_with_a_broken_plugin(installed, tmp_path):
    spec = tmp_path / "m.nn"
    spec.write_text(USES_GLU, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(installed["broken"]), str(installed["glu"]), str(ROOT_PATH)]))
    layers = subprocess.run([sys.executable, "-m", "nnspec.cli", "layers"], env=env,
                            capture_output=True, text=True)
    assert layers.returncode == 1  # listed, but the broken plugin must not go unnoticed
    assert "`gated_linear(out_features, bias=true)`" in layers.stdout
    assert "`pass_through()`" in layers.stdout
    assert "Traceback" not in layers.stderr and len(layers.stderr.splitlines()) == 4
    assert all(line.startswith("nnspec: error: plugin `") for line in layers.stderr.splitlines())
    check = subprocess.run([sys.executable, "-m", "nnspec.cli", "check", str(spec)], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("ok: m(): 72 parameters")
    assert len(check.stderr.splitlines()) == 4 and "Traceback" not in check.stderr
