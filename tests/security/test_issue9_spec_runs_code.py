"""Regression tests for issue 9, defect 4: the four ways a spec ran code at build() on main.

Each payload creates a canary file if it runs; after the fix each spec builds (the text is a
docstring or comment) and the canary never appears.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main

BLOCK = "block Lin(s, n) {\n  in x\n  out x -> fc: linear(n)\n}\n"


def payload(canary: Path) -> str:
    return f'x"""+str(__import__(\'os\').system(\'touch {canary}\'))+"""'


def test_a_model_parameter_default(tmp_path):
    canary = tmp_path / "pwned"
    spec = (f"model m(p = {json.dumps(payload(canary))}) {{\n  input x: float[4]\n"
            "  out x -> fc: linear(4)\n}\n")
    assert nnspec.loads(spec).build()(torch.zeros(1, 4)).shape == (1, 4)
    assert not canary.exists()


def test_a_string_passed_down_into_a_block(tmp_path):
    canary = tmp_path / "pwned"
    spec = (f"{BLOCK}model m(p = \"a\") {{\n  input x: float[4]\n"
            f"  out x -> b: Lin({json.dumps(payload(canary))}, 4)\n}}\n")
    nnspec.loads(spec).build()
    assert not canary.exists()


def test_a_set_value(tmp_path, monkeypatch):
    canary = tmp_path / "pwned"
    spec = tmp_path / "m.nn"
    spec.write_text('model m(p = "a") {\n  input x: float[4]\n  out x -> fc: linear(4)\n}\n',
                    encoding="utf-8")
    nnspec.load(spec, p=payload(canary)).build()
    assert not canary.exists()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out), "--set",
                 f"p={json.dumps(payload(canary))}"]) == 0
    compile((out / "model.py").read_text(encoding="utf-8"), "model.py", "exec")
    namespace: dict = {}
    exec((out / "model.py").read_text(encoding="utf-8"), namespace)  # what `import model` does
    assert not canary.exists()


def test_a_use_path_with_a_newline(tmp_path, monkeypatch):
    """The file name reached `# file:line` comments: a newline in it started a new line of code."""
    folder = tmp_path / "specs"
    folder.mkdir()
    canary = folder / "pwned"  # a file name cannot hold a "/": the payload touches it in the cwd
    name = "b.nn\n__import__('os').system('touch pwned')\n#.nn"
    (folder / name).write_text(BLOCK, encoding="utf-8")
    spec = folder / "root.nn"
    spec.write_text(f"use {json.dumps(name)}\nmodel m {{\n  input x: float[4]\n"
                    "  out x -> b: Lin(\"s\", 4)\n}\n", encoding="utf-8")
    monkeypatch.chdir(folder)
    nnspec.load(spec).build()
    assert not canary.exists()


@pytest.mark.parametrize("name", ['a"""b', "a\nb", "a\u2028b"])
def test_a_spec_name(tmp_path, name):
    """The spec's own name reaches the module docstring."""
    canary = tmp_path / "pwned"
    text = "model m {\n  input x: float[4]\n  out x -> fc: linear(4)\n}\n"
    nnspec.loads(text, name=f'{name}"""+str(__import__("os").system("touch {canary}"))+"""').build()
    assert not canary.exists()
