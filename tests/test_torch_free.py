"""The commands people wait on (check, summary, plan, fmt, layers) never import torch, deepspeed or
transformers: importing torch alone takes seconds, and checking a spec needs none of it.

Each command runs in a fresh interpreter (this test process has torch loaded already) through a
probe that calls nnspec.cli.main and then reports which modules are loaded.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nnspec.cli import build_parser

from .conftest import ROOT

HEAVY = ("torch", "deepspeed", "transformers")

# the commands that must stay torch-free; `fmt` joins when it lands (see test_every_fast_command)
FAST_COMMANDS = ("check", "summary", "plan", "fmt", "layers")

PROBE = """
import json, sys
from nnspec.cli import main
rc = main(sys.argv[2:])
heavy = sorted(m for m in sys.modules if m.partition(".")[0] in {heavy!r})
with open(sys.argv[1], "w") as f:
    json.dump({{"rc": rc, "heavy": heavy}}, f)
""".format(heavy=HEAVY)


def subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def python(code: str, *argv: str) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter, from the repository root."""
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def probe(tmp_path, *argv: str) -> dict:
    """Run `nnspec ARGV` in a new interpreter; its exit code and the heavy modules it loaded."""
    out = tmp_path / "probe.json"
    done = python(PROBE, str(out), *argv)
    assert out.exists(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(out.read_text())


CASES = {
    "check": [["specs/resnet50.nn"], ["specs/tiny_gpt_pipe.nn"], ["specs/digits_distill.nn"],
              ["tests/golden/valid/ensemble_members.nn"],
              ["specs/digits_int8.nn", "--set", "train.optimizer=nadam(lr=0.01)",
               "--set", "train.schedule=one_cycle(pct_start=0.2)"]],
    "summary": [["specs/swin_t.nn"], ["--json", "specs/gpt2_small.nn"],
                ["tests/golden/valid/ensemble_members.nn"]],
    "plan": [["specs/gpt3_1_3b.nn", "--gpus", "16"], ["specs/gpt2_small.nn", "--gpus", "8",
                                                      "--auto"],
             ["tests/golden/valid/ensemble_members.nn", "--gpus", "2"]],
    "fmt": [["--check", "specs/resnet50.nn", "specs/gpt2_small.nn"]],
    "layers": [[], ["conv2d"]],
}
# fmt --check exits 1 on a file it would reformat: that is an answer, not a failure
EXPECTED_RC = {"fmt": (0, 1)}


def test_every_fast_command():
    """Every fast command has cases; the four that exist before `fmt` are all there."""
    assert {"check", "summary", "plan", "layers"} <= subcommands()
    assert set(CASES) == set(FAST_COMMANDS)


# fmt lands from its own branch: it is probed from the moment the parser has it
@pytest.mark.parametrize("command,argv", [
    (c, argv) for c in FAST_COMMANDS if c in subcommands() for argv in CASES[c]],
    ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_command_imports_no_torch(command, argv, tmp_path):
    got = probe(tmp_path, command, *argv)
    assert got["rc"] in EXPECTED_RC.get(command, (0,))
    assert got["heavy"] == []


def test_spec_errors_import_no_torch(tmp_path):
    """Bad settings, the optimizer's values included, are reported without constructing it."""
    got = probe(tmp_path, "check", "specs/resnet18.nn",
                "--set", "train.optimizer=adamw(lr=-1.0, betas=[0.9, 1.5])",
                "--set", "train.schedule=warmup_cosine(min_ratio=2)")
    assert got == {"rc": 1, "heavy": []}


# every module under these packages imports without torch; the tools (train, compress, export,
# interp, the runtime helpers' own modules) and emit/module.py may import it
TORCH_FREE_PACKAGES = ("nnspec.lang", "nnspec.layers", "nnspec.plan", "nnspec.ir", "nnspec.place",
                       "nnspec.data")
TORCH_FREE_MODULES = ("nnspec", "nnspec.cli", "nnspec.compile", "nnspec.runtime",
                      "nnspec.emit.source", "nnspec.emit.summary", "nnspec.emit.deepspeed",
                      "nnspec.emit.reference", "nnspec.emit.launch")


def test_front_end_modules_import_no_torch():
    code = f"""
import importlib, pkgutil, sys
names = list({TORCH_FREE_MODULES!r})
for package in {TORCH_FREE_PACKAGES!r}:
    module = importlib.import_module(package)
    names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
    heavy = sorted(m for m in sys.modules if m.partition(".")[0] in {HEAVY!r})
    assert not heavy, (name, heavy[:3])
print(len(names))
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > 50   # the walk found the packages' modules


def test_runtime_helpers_read_from_their_files_are_the_classes():
    """nnspec.runtime finds its helpers with `ast` (no torch): the same classes, in the same
    order, with the same source text as importing the modules and asking `inspect` gives."""
    import importlib
    import inspect
    import pkgutil

    import torch.nn as nn

    from nnspec import runtime

    classes = {}
    for info in pkgutil.iter_modules(runtime.__path__):
        module = importlib.import_module(f"nnspec.runtime.{info.name}")
        classes.update({name: obj for name, obj in vars(module).items()
                        if inspect.isclass(obj) and issubclass(obj, nn.Module)
                        and obj.__module__ == module.__name__})
    assert list(runtime.HELPERS) == list(classes) and len(classes) > 10
    for name, cls in classes.items():
        assert runtime.HELPERS[name] is cls and name in runtime.HELPERS
        assert runtime.helper_source(name) == inspect.getsource(cls)
