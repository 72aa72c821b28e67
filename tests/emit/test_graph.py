"""`nnspec graph`: the network drawn from the checked IR as DOT, SVG (laid out here) and PNG."""
from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nnspec.compile import load, loads
from nnspec.emit.graph import build_graph, dot_string, dot_text
from nnspec.emit.graph_layout import layout
from nnspec.emit.graph_render import render
from tests.test_golden import run_cli

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"

SMALL = """
block Unit(c) {
  in x
  h = x -> conv: conv2d(c, 3, padding=1) -> relu
  out h -> add(x)
}

model net {
  input x: float[4, 8, 8]
  stem: conv2d(4, 1)
  units: [Unit(4), Unit(4)]
  global_avgpool
  fc: linear(3)
}
"""

NASTY = '''
model evil(tag = "<script>alert(\\"x\\")</script> & \\\\N") {
  input x: float[6]
  "<script>\\"a&b\\"</script>": linear(4)
  "back\\\\slash\\\\l": linear(2)
}
'''


def small():
    return loads(SMALL, name="small.nn").lowered


def test_dot_has_the_nodes_edges_clusters_and_labels():
    dot = dot_text(build_graph(small()))
    labels = re.findall(r'^\s+(n\d+) \[label="([^"]*)"', dot, re.M)
    titles = {label.split("\\n")[0] for _, label in labels}
    assert len(labels) == 11  # relu, add and global_avgpool are functional: a node per call
    assert titles == {"input x", "stem", "units.0.conv", "relu", "add", "units.1.conv",
                      "global_avgpool", "fc", "output"}
    assert "stem\\nconv2d\\n20 params" in dot   # 4*4*1*1 weights + 4 biases
    assert dot.count("subgraph cluster_") == 3  # units, units.0, units.1
    assert 'label="units.0: Unit(c=4) (148 params)"' in dot
    edges = re.findall(r'(n\d+) -> (n\d+) \[label="([^"]*)"\]', dot)
    ids = {label.split("\\n")[0]: n for n, label in labels}
    assert (ids["input x"], ids["stem"], "[B, 4, 8, 8]") in edges
    assert (ids["fc"], ids["output"], "[B, 3]") in edges
    assert (ids["stem"], ids["units.0.conv"], "[B, 4, 8, 8]") in edges
    assert len(edges) == 12  # the chain of 11 nodes plus two residual edges into the adds


def test_svg_parses_and_shows_every_layer_and_shape():
    svg = render(small(), "svg").decode()
    tree = ET.fromstring(svg)
    texts = [t.text for t in tree.iter(SVG + "text")]
    for name in ("stem", "units.0.conv", "units.1.conv", "relu", "fc", "input x", "output",
                 "[B, 4, 8, 8]", "[B, 4]", "[B, 3]", "units.1: Unit(c=4) (148 params)"):
        assert name in texts, name
    rects = [r for r in tree.iter(SVG + "rect")]
    assert len(rects) == 1 + 3 + 11  # the background, 3 clusters, 11 nodes


def _apart(a, b) -> bool:
    return a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y


@pytest.mark.parametrize("path, depth", [("specs/resnet18.nn", None), ("specs/convnext_tiny.nn", None),
                                         ("tests/golden/valid/tensor_ops.nn", 1)])
def test_layout_keeps_nodes_apart_and_out_of_other_blocks(path, depth):
    # convnext's layer_scale sits beside a block it is not in; tensor_ops has branches beside one
    placed = layout(build_graph(load(ROOT / path).lowered, depth))
    nodes = placed.graph.nodes
    for i, a in enumerate(nodes):
        box = placed.nodes[a.id]
        assert all(_apart(box, placed.nodes[b.id]) for b in nodes[i + 1:])
        assert all(_apart(box, c) for k, c in placed.clusters.items() if k not in a.cluster)
        assert all(not _apart(box, placed.clusters[k]) for k in a.cluster)


def test_depth_collapses_blocks_into_one_node_with_the_summary_count():
    spec = loads(SMALL, name="small.nn")
    rows = {r["name"]: r for r in spec.summary()["layers"]}
    full, one, none = (build_graph(spec.lowered, d) for d in (None, 1, 0))
    assert len(none.nodes) < len(one.nodes) < len(full.nodes)
    block = {n.title: n for n in one.nodes}["units.0"]
    assert (block.role, block.detail, block.params) == ("block", "Unit(c=4)",
                                                        rows["units.0"]["params"])
    top = {n.title: n for n in none.nodes}["units"]
    assert top.params == rows["units"]["params"] == 296
    assert none.clusters == [] and len(one.clusters) == 1


def test_depth_on_gpt2_counts_match_the_summary():
    spec = load(ROOT / "specs/gpt2_small.nn")
    rows = {r["name"]: r["params"] for r in spec.summary()["layers"]}
    graph = build_graph(spec.lowered, 2)
    blocks = [n for n in graph.nodes if n.role == "block"]
    assert blocks and all(n.params == rows[n.title] for n in blocks)


def test_every_user_string_is_escaped():
    low = loads(NASTY, name="nasty.nn").lowered
    svg = render(low, "svg").decode()
    assert "<script>" not in svg
    tree = ET.fromstring(svg)   # still one well-formed document
    texts = [t.text for t in tree.iter(SVG + "text")]
    assert '<script>"a&b"</script>' in texts and "back\\slash\\l" in texts
    assert any('<script>alert("x")</script>' in (t or "") for t in texts)
    dot = render(low, "dot").decode()
    assert 'label="<script>\\"a&b\\"</script>\\nlinear' in dot
    assert 'label="back\\\\slash\\\\l\\nlinear' in dot   # \l stays text, not a DOT escape
    # every quoted string closes where it should: outside the strings only DOT syntax is left
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)
    assert "script" not in bare and "slash" not in bare


def test_dot_string_escapes_quotes_backslashes_and_line_breaks():
    assert dot_string('a"b\\c\nd\r\ne') == '"a\\"b\\\\c\\nd\\ne"'


def test_svg_keeps_characters_xml_cannot_hold_out():
    from nnspec.emit.graph_layout import escape

    assert escape("a\x01<b>") == "a\ufffd&lt;b&gt;"


@pytest.mark.parametrize("name", ["resnet18", "gpt2_small"])
def test_big_specs_render_quickly(name):
    low = load(ROOT / f"specs/{name}.nn").lowered
    start = time.perf_counter()
    svg = render(low, "svg")
    assert time.perf_counter() - start < 3
    ET.fromstring(svg)


def test_png_is_a_png_of_the_layout():
    from PIL import Image
    import io

    data = render(small(), "png")
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 300


def test_cli_end_to_end(tmp_path, in_root):
    for fmt in ("svg", "png", "dot"):
        out = tmp_path / f"net.{fmt}"
        code, stdout, err = run_cli("graph", "specs/digits_mlp.nn", "-o", str(out), "--depth", "1")
        assert (code, err) == (0, "") and stdout == f"wrote {out}\n"
        assert out.stat().st_size > 100
    assert ET.parse(tmp_path / "net.svg").getroot().tag == SVG + "svg"
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "net.dot").read_text().startswith("digraph nnspec {")
    out = tmp_path / "new" / "picture"   # a missing folder is made, as export-weights does
    code, _, err = run_cli("graph", "specs/digits_mlp.nn", "-o", str(out), "--format", "dot")
    assert code == 0 and out.read_text().startswith("digraph")


@pytest.mark.parametrize("argv, message", [
    (["-o", "{tmp}/net.jpg"], "cannot tell the format"),
    (["-o", "{tmp}/net.svg", "--depth", "-1"], "--depth must be at least 0"),
    (["-o", "{tmp}"], "is a folder"),
])
def test_cli_usage_errors(tmp_path, in_root, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run_cli("graph", "specs/digits_mlp.nn", *argv)
    assert code == 2 and err.startswith("nnspec: error: ") and message in err


def test_cli_refuses_a_symlink_and_keeps_the_old_file_on_errors(tmp_path, in_root):
    target = tmp_path / "mine.txt"
    target.write_text("keep")
    (tmp_path / "link.svg").symlink_to(target)
    code, _, err = run_cli("graph", "specs/digits_mlp.nn", "-o", str(tmp_path / "link.svg"))
    assert code == 2 and "symbolic link" in err and target.read_text() == "keep"
    old = tmp_path / "net.svg"
    old.write_text("old")
    code, _, _ = run_cli("graph", "specs/digits_mlp.nn", "-o", str(old), "--set", "nope=1")
    assert code != 0 and old.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_spec_errors_are_diagnostics(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model m {\n  input x: float[4]\n  linear(\n}\n")
    out = tmp_path / "net.svg"
    code, _, err = run_cli("graph", str(bad), "-o", str(out))
    assert code == 1 and "error[" in err and not out.exists()


def test_the_readme_picture_is_up_to_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "scripts/docs_pages.py")
    pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pages)
    image = pages.picture()
    assert pages.PICTURE.read_bytes() == image, "run: python scripts/docs_pages.py"
    texts = [t.text for t in ET.fromstring(image).iter(SVG + "text")]
    assert "transformer.h.1.mlp" in texts and "[B, 1024, 50257]" in texts
    for page in ("README.md", "docs/index.md"):
        assert "img/gpt2_small.svg" in (ROOT / page).read_text(encoding="utf-8")


def test_tensors_passed_beside_a_list_reach_every_item():
    # bert's encoder list passes the attention mask to each layer beside the chained hidden state
    spec = load(ROOT / "specs/bert_base.nn")
    graph = build_graph(spec.lowered, 2)
    title = {n.id: n.title for n in graph.nodes}
    into = {}
    for src, dst, label in graph.edges:
        into.setdefault(title[dst], []).append((title[src], label))
    for i in range(12):
        sources = into[f"encoder.layer.{i}"]
        assert ("input attention_mask", "[B, 128]") in sources and len(sources) == 2


BIG = """
block B(c) {
  in x
  h = x -> fc: linear(c) -> relu
  out h -> add(x)
}
model big {
  input x: float[8]
  blocks: [B(8) * 1000]
}
"""


def test_a_thousand_blocks_draw_fast_and_a_too_large_png_is_refused(tmp_path):
    low = loads(BIG, name="big.nn").lowered
    start = time.perf_counter()
    assert render(low, "svg").startswith(b"<svg") and render(low, "dot").startswith(b"digraph")
    assert time.perf_counter() - start < 5
    spec = tmp_path / "big.nn"
    spec.write_text(BIG)
    code, _, err = run_cli("graph", str(spec), "-o", str(tmp_path / "big.png"))
    assert code == 2 and "--depth" in err and not (tmp_path / "big.png").exists()
    code, _, err = run_cli("graph", str(spec), "-o", str(tmp_path / "big.png"), "--depth", "0")
    assert code == 0 and (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG"
