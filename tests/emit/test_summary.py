"""`nnspec summary`: rows with input and output shapes as lists, `--depth`, activation memory
checked against forward hooks on the built module (the way torchinfo counts it)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nnspec.cli import main
from nnspec.compile import load, loads
from nnspec.emit.summary import dumps, shape_text

ROOT = Path(__file__).resolve().parents[2]

SMALL = """
block Unit(c) {
  in x
  h = x -> conv: conv2d(c, 3, padding=1) -> act: relu
  h = h -> act
  out h + x
}

model net {
  input x: float[4, 8, 8]
  stem: conv2d(4, 1)
  units: [Unit(4), Unit(4)]
  global_avgpool
  fc: linear(3)
}
"""


def leaf_output_bytes(model: torch.nn.Module, inputs: list[torch.Tensor]) -> int:
    """Bytes of every output of every leaf module's calls, seen by forward hooks."""
    seen = []

    def hook(module, args, out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        seen.extend(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor))

    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(*inputs)
    return sum(seen)


@pytest.mark.parametrize("spec", [pytest.param(lambda: load(ROOT / "specs/resnet18.nn"),
                                               id="resnet18"),
                                  pytest.param(lambda: loads(SMALL, name="net.nn"), id="small"),
                                  pytest.param(lambda: load(ROOT / "tests/golden/valid/"
                                                            "learned_tensors.nn"),
                                               id="nn.Parameter")])
def test_activation_bytes_are_the_leaf_outputs_hooks_see(spec):
    spec = spec()
    inputs = [torch.zeros(1, *v["shape"]) for v in spec.summary()["inputs"].values()]
    want = leaf_output_bytes(spec.build().eval(), inputs)
    assert spec.summary()["activation_bytes"] == want
    if spec.name == "resnet18":  # fp32: 4 bytes per element of every leaf module's output
        assert want == 4 * 7_477_736


def test_a_reused_layer_counts_each_call():
    rows = loads(SMALL, name="net.nn").summary()["layers"]
    acts = [r for r in rows if r["name"] == "units.0.act"]
    assert [r["shared"] for r in acts] == [False, True]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_depth_collapses_blocks_into_one_row(in_root, capsys):
    full = load("specs/resnet18.nn").summary()
    code, out, _ = run(capsys, "summary", "specs/resnet18.nn", "--json", "--depth", "0")
    assert code == 0
    top = json.loads(out)
    assert [r["name"] for r in top["layers"]] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
        "(flatten)", "fc"]
    # a collapsed block keeps its summed parameters and FLOPs and its output shape
    layer2 = next(r for r in top["layers"] if r["name"] == "layer2")
    assert layer2["params"] == 525_568 and layer2["output_shape"] == ["B", 128, 28, 28]
    assert sum(r["params"] for r in top["layers"]) == top["params"] == full["params"]
    assert sum(r["flops"] for r in top["layers"]) == top["flops"] == full["flops"]
    assert top["activation_bytes"] == full["activation_bytes"]  # totals stay whole

    code, out, _ = run(capsys, "summary", "specs/resnet18.nn", "--json", "--depth", "1")
    names = [r["name"] for r in json.loads(out)["layers"]]
    assert names[4:7] == ["layer1", "layer1.0", "layer1.1"] and "layer1.0.conv1" not in names
    assert len(names) == 11 + 8
    assert max(r["depth"] for r in full["layers"]) == 3  # layerN.0.downsample.0
    assert len(full["layers"]) > len(names)

    code, table, _ = run(capsys, "summary", "specs/resnet18.nn", "--depth", "0")
    assert "layer1.0" not in table and "layer4 " in table and "Total params: 11,689,512" in table


@pytest.mark.parametrize("flag", ["--depth=-1", "--batch-size=0"])
def test_bad_depth_or_batch_is_a_usage_error(in_root, capsys, flag):
    code, _, err = run(capsys, "summary", "specs/resnet18.nn", flag)
    assert code == 2 and err.startswith("nnspec: error: --") and "Traceback" not in err


def test_json_shapes_are_lists_with_a_batch_dim(in_root, capsys):
    code, out, _ = run(capsys, "summary", "specs/resnet18.nn", "--json")
    rows = json.loads(out)["layers"]
    conv1 = rows[0]
    assert conv1["input_shape"] == ["B", 3, 224, 224]
    assert conv1["output_shape"] == ["B", 64, 112, 112]
    add = next(r for r in rows if r["kind"] == "add")
    assert add["input_shape"] == [["B", 64, 56, 56], ["B", 64, 56, 56]]  # one list per tensor
    for r in rows:
        shapes = r["output_shape"] if isinstance(r["output_shape"][0], list) else [r["output_shape"]]
        assert all(s[0] == "B" and all(isinstance(d, int) for d in s[1:]) for s in shapes)
    # the shipped summary.json is the same data
    shipped = json.loads((in_root / "tests/golden/shipped/resnet18.summary.json").read_text())
    assert shipped["layers"] == rows


def test_table_has_input_shapes_and_memory_at_the_batch_size(in_root, capsys):
    code, table, _ = run(capsys, "summary", "specs/resnet18.nn", "--batch-size", "16")
    header = next(line for line in table.splitlines() if line.startswith("Layer"))
    assert header.split()[:6] == ["Layer", "Kind", "Input", "shape", "Output", "shape"]
    conv1 = next(line for line in table.splitlines() if line.startswith("conv1"))
    assert conv1.split()[2:10] == ["[B,", "3,", "224,", "224]", "[B,", "64,", "112,", "112]"]
    add = next(line for line in table.splitlines() if "layer1.0.(add)" in line)
    assert re.search(r"\[B, 64, 56, 56\] x2 +\[B, 64, 56, 56\]", add)  # both residual sides
    act = load("specs/resnet18.nn").summary()["activation_bytes"]
    assert f"Forward/backward pass size (batch 16): {16 * act / 1e6:,.2f} MB" in table
    assert f"Input size (batch 16): {16 * 4 * 3 * 224 * 224 / 1e6:,.2f} MB" in table


def test_json_keeps_each_flat_list_on_one_line():
    data = {"model": "m(tag=\"[\\n]\", sizes=[1, 2])", "shape": ["B", 3, 4], "none": [],
            "rows": [{"in": [["B", 1], ["B", 2]]}], "names": ["a", "b]"]}
    text = dumps(data)
    assert json.loads(text) == data
    assert '"shape": ["B", 3, 4]' in text and '"none": []' in text
    assert '\n        ["B", 1],\n        ["B", 2]\n' in text
    assert shape_text(["B", 3, 4]) == "[B, 3, 4]"
    assert shape_text([["B", 1], ["B", 2]]) == "[B, 1], [B, 2]"
