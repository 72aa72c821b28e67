"""emit/verify.py: build() runs generated source only when its tree is what the emitters write.

Every shipped spec's and valid golden's source passes; a source with any construct the emitters
never write is refused before it runs (a canary file the payload would create never appears).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import nnspec
from nnspec.emit.module import load_source
from nnspec.emit.verify import FORBIDDEN_ATTRS, FORBIDDEN_NAMES, GeneratedSourceError, verify_source
from nnspec.ir.lower import MODULE_ATTRS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "specs").glob("*.nn")) + sorted(
    (ROOT / "tests" / "golden" / "valid").glob("*.nn"))

TINY = """
block Res(n) {
  in x
  h = x -> fc: linear(n) -> relu
  out x + h
}
model tiny(width = 8) {
  input x: float[8]
  y = x -> a: Res(width) -> b: Res(width)
  z = y -> drop: dropout(0.1) -> norm: layernorm
  out z -> head: linear(3)
}
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_source_passes(path: Path):
    spec = nnspec.load(path, max_params=10**13)  # gpt3_13b is over the default limit
    verify_source(spec.source)
    if spec.partition.stages > 1:
        verify_source(spec.pipeline_source())


def _tiny_source() -> str:
    return nnspec.loads(TINY).source


def test_the_tiny_source_builds_and_passes():
    source = _tiny_source()
    verify_source(source)
    assert load_source(source)()(__import__("torch").zeros(2, 8)).shape == (2, 3)


# each edit inserts one construct the emitters never write, with a payload that would create
# the canary file; {canary} is its path
FORWARD = "    def forward(self, x):\n"
HOSTILE_FORWARD = [
    "__import__('os').system('touch {canary}')",
    "eval(\"open('{canary}', 'w')\")",
    "exec(\"open('{canary}', 'w')\")",
    "open('{canary}', 'w')",
    "getattr(torch, 'load')",
    "setattr(self, 'x', 1)",
    "globals()",
    "vars(self)",
    "breakpoint()",
    "compile('1', 's', 'eval')",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__dict__",
    "__builtins__",
    "torch.load('{canary}')",
    "torch.save(x, '{canary}')",
    "torch.hub",
    "torch._C",
    "(lambda: open('{canary}', 'w'))()",
    "[open('{canary}', 'w') for _ in range(1)]",
    "f\"{{open('{canary}', 'w')}}\"",
    "print('hello')",
    "super().forward(x)",
    "x.numpy().tofile('{canary}')",
    "self.fc.weight.data.numpy().tofile('{canary}')",
]


def _with_line(source: str, line: str) -> str:
    """The source with `line` as the first statement of the first forward."""
    at = source.index(FORWARD) + len(FORWARD)
    return source[:at] + f"        {line}\n" + source[at:]


@pytest.mark.parametrize("expr", HOSTILE_FORWARD)
def test_a_forbidden_expression_is_refused_and_never_runs(expr: str, tmp_path):
    canary = tmp_path / "canary"
    source = _with_line(_tiny_source(), "v = " + expr.format(canary=canary))
    with pytest.raises(GeneratedSourceError, match="internal error"):
        load_source(source)
    assert not canary.exists()


HOSTILE_STATEMENTS = {
    "top-level import": "import os\n",
    "top-level from-import": "from os import system\n",
    # the one from-import the header writes (named list items) is collections' OrderedDict, as is
    "from-import of collections": "from collections import deque\n",
    "from-import renamed": "from collections import OrderedDict as system\n",
    "top-level call": "__import__('os').system('touch {canary}')\n",
    "top-level assignment": "x = open('{canary}', 'w')\n",
    "Model bound to a call": "Model = __import__('os').system('touch {canary}')\n",
    "decorated class": "@__import__('os').system\nclass Evil(nn.Module):\n    pass\n",
    "metaclass": "class Evil(nn.Module, metaclass=type):\n    pass\n",
    "other base": "class Evil(object):\n    pass\n",
    "method default": ("class Evil(nn.Module):\n    def forward(self, x=open('{canary}', 'w')):\n"
                       "        return x\n"),
    "other method": "class Evil(nn.Module):\n    def __reduce__(self):\n        return 1\n",
    "class attribute": "class Evil(nn.Module):\n    a = open('{canary}', 'w')\n",
    "while loop": "while False:\n    pass\n",
    "try": "try:\n    pass\nexcept Exception:\n    pass\n",
    "with": "with open('{canary}', 'w'):\n    pass\n",
    "function": "def evil():\n    return 1\n",
}


@pytest.mark.parametrize("name", list(HOSTILE_STATEMENTS))
def test_a_forbidden_statement_is_refused_and_never_runs(name: str, tmp_path):
    canary = tmp_path / "canary"
    source = _tiny_source()
    at = source.index("\nimport torch.nn as nn")  # the one import every model.py has
    text = HOSTILE_STATEMENTS[name].format(canary=canary)
    for hostile in (source[:at] + "\n" + text + source[at:], source + "\n" + text):
        with pytest.raises(GeneratedSourceError):
            load_source(hostile)
        assert not canary.exists()


@pytest.mark.parametrize("line", [
    "import os", "global torch", "del self.fc", "assert open('{canary}', 'w')",
    "self.fc.weight.data += 1", "raise ValueError()",
    # the generic classes' `if` (a block's optional structure) and `raise ValueError("...")` (a
    # parameter fixed in this file) hold only what any other statement may hold
    "if open('{canary}', 'w'):\n            pass", "if True:\n            import os",
    "if True:\n            pass\n        else:\n            del self.fc",
    "raise ValueError(open('{canary}', 'w'))", "raise OSError('x')",
    "raise ValueError('x') from None", "raise ValueError(f'{{self}}')",
    "super().__init__(open('{canary}', 'w'))", "x.__init__()",
    # add_module (a child whose name is not an identifier) takes a literal name and a module
    "self.add_module(open('{canary}', 'w'), self.fc)",
    "self.add_module('x', open('{canary}', 'w'))", "self.fc.add_module('x', self.fc)",
    "self.add_module('x')", "self.add_module(name='x', module=self.fc)",
])
def test_a_forbidden_statement_in_a_method_is_refused(line: str, tmp_path):
    canary = tmp_path / "canary"
    with pytest.raises(GeneratedSourceError):
        load_source(_with_line(_tiny_source(), line.format(canary=canary)))
    assert not canary.exists()


def test_a_changed_helper_class_is_refused(tmp_path):
    """Runtime helpers are trusted only as their exact text: one edited line is checked like
    generated code, and refused."""
    spec = nnspec.loads("model m {\n  input x: float[3, 8, 8]\n  out x -> sep: "
                        "separable_conv2d(4, 3)\n}\n")
    source = spec.source
    assert "class SeparableConv2d(nn.Module)" in source
    canary = tmp_path / "canary"
    evil = source.replace("        mid = in_channels * depth_multiplier",
                          f"        mid = in_channels * depth_multiplier\n"
                          f"        open({str(canary)!r}, 'w')")
    assert evil != source
    with pytest.raises(GeneratedSourceError):
        load_source(evil)
    load_source(source)
    assert not canary.exists()


def test_the_old_docstring_injection_is_refused(tmp_path):
    """The text main emitted for issue 9's spec: the docstring ended early and a call ran."""
    canary = tmp_path / "pwned"
    source = (f'"""m(p="x"""+str(__import__(\'os\').system(\'touch {canary}\'))+"""") as PyTorch '
              'modules.\n"""\nimport torch\nimport torch.nn as nn\n\n\nclass M(nn.Module):\n'
              '    def forward(self, x):\n        return x\n\n\nModel = M\n')
    compile(source, "<old>", "exec")  # it was valid Python
    with pytest.raises(GeneratedSourceError):
        load_source(source)
    assert not canary.exists()


def test_a_source_that_does_not_parse_is_refused():
    with pytest.raises(GeneratedSourceError, match="does not parse"):
        verify_source('"""unterminated\n')


@pytest.mark.parametrize("block", ["f", "Model", "LAYERS", "nn", "torch", "math", "SeparableConv2d",
                                   "Layer0_Linear"])
def test_a_block_cannot_rebind_a_name_of_model_py(block: str):
    """A block named `f` became `class F`, shadowing torch.nn.functional; one named `Model`
    replaced the root class (infinite recursion at build). Their classes are renamed."""
    spec = nnspec.loads(f"block {block}(n) {{\n  in x\n  out x -> fc: linear(n) -> relu\n}}\n"
                        f"model m {{\n  input x: float[3, 4, 4]\n  y = x -> sep: "
                        f"separable_conv2d(3, 1) -> flatten -> gelu\n"
                        f"  out y -> b: {block}(4)\n}}\n")
    import torch
    assert spec.build()(torch.zeros(2, 3, 4, 4)).shape == (2, 4)
    classes = [line.split("(")[0][6:] for line in spec.source.splitlines()
               if line.startswith("class ")]
    assert len(classes) == len(set(classes)) and "F" not in classes and "Model" not in classes


@pytest.mark.parametrize("name", sorted(FORBIDDEN_NAMES))
def test_tensors_named_like_a_refused_builtin_are_renamed_and_build(name: str):
    """A spec may name its tensors `input` (torchvision's EncoderBlock does) or `type`: the
    generated variable gets a suffix (a dunder name a prefix) instead of being refused."""
    spec = nnspec.loads(f"""
block B() {{
  in {name}
  {name}_h = {name} -> fc: linear(4)
  out {name} + {name}_h
}}
model m() {{
  input {name}: float[4]
  {name}_out = {name} -> b: B
  out {name}_out
}}
""")
    verify_source(spec.source)
    renamed = "x" + name if name.startswith("__") else name + "_"
    assert f"def forward(self, {renamed})" in spec.source
    assert spec.build()(__import__("torch").zeros(2, 4)).shape == (2, 4)


@pytest.mark.parametrize("name", sorted(FORBIDDEN_ATTRS - MODULE_ATTRS))   # those are E0209
def test_layers_named_like_a_refused_attribute_build(name: str):
    """`save: linear(4)` checked but failed at build: the verifier refuses `self.save`, since no
    emitter writes such a call. Such children are added and reached by name (add_module,
    get_submodule), in a block, in a list, and as a tie's source, and compute what the spec says."""
    from tests.differential.harness import check_spec

    spec = nnspec.loads(f"""
block B(w) {{
  in x
  h = x -> {name}: linear(w) -> relu
  out h -> {name}
}}
model m() {{
  input x: float[4]
  {name}: linear(4)
  blk: B(4)
  seq: [{name}: linear(4), relu]
  head: linear(4, tie={name})
}}
""")
    verify_source(spec.source)
    model = spec.build()
    assert model.head.weight is model.get_submodule(name).weight
    assert {f"{name}.weight", f"blk.{name}.weight", f"seq.{name}.weight"} <= set(model.state_dict())
    check_spec(spec)   # the built module agrees with the reference interpreter


ENSEMBLE = """
model m(width = 8) {
  input x: float[8]
  fc: linear(width)
}
ensemble { members = 2 }
"""


def test_an_ensembles_class_passes_only_its_members_to_the_helper(tmp_path):
    """A class derived from a runtime helper (an ensemble's, from Ensemble) may pass arguments to
    super().__init__; they are checked like any expression, and no other class may derive from
    anything but nn.Module."""
    source = nnspec.loads(ENSEMBLE).source
    assert "class MEnsemble(Ensemble)" in source
    load_source(source)
    canary = tmp_path / "canary"
    for evil in (source.replace("], combine='mean_probs')",
                                f"], combine=open({str(canary)!r}, 'w'))"),
                 source.replace("class M(nn.Module)", "class M(Ensemble)").replace(
                     "        super().__init__()\n", f"        super().__init__(open("
                     f"{str(canary)!r}, 'w'))\n", 1),
                 source.replace("class MEnsemble(Ensemble)", "class MEnsemble(M)")):
        assert evil != source
        with pytest.raises(GeneratedSourceError):
            load_source(evil)
    assert not canary.exists()
