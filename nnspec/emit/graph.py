"""Emit a picture of the network: the checked IR as a graph of nodes (layers, collapsed blocks,
the spec's inputs and outputs), edges labelled with the shape they carry, and clusters for the
blocks that are drawn open. `dot_text` writes it as Graphviz DOT; nnspec.emit.graph_layout lays
it out and draws SVG itself (graph_png: PNG), so no system binary is needed; graph_render picks."""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.ir import Leaf, ModuleDef, Op, Seq, iter_params
from nnspec.ir.lower import Lowered
from nnspec.layers.base import T, fmt_shape, numel

@dataclass
class Node:
    id: str
    title: str                 # the layer's path in the module, or "input x"
    detail: str                # kind, block signature or dtype
    params: int
    role: str                  # "layer", "block" (collapsed), "input", "output", "op"
    cluster: tuple[int, ...]   # indices of the clusters it is drawn in, outermost first

    @property
    def lines(self) -> list[str]:
        out = [self.title, self.detail] if self.detail else [self.title]
        return out + ([f"{self.params:,} params"] if self.params else [])


@dataclass
class Cluster:
    title: str
    detail: str
    params: int

    @property
    def label(self) -> str:
        return f"{self.title}: {self.detail}" + (f" ({self.params:,} params)" if self.params else "")


@dataclass
class Graph:
    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (src, dst, shape label)
    clusters: list[Cluster] = field(default_factory=list)


Source = tuple[str, T]  # the node that produced a tensor, and the tensor's type


def build_graph(low: Lowered, depth: int | None = None) -> Graph:
    """The network of `low` as a Graph; blocks nested deeper than `depth` (a top-level block is at
    depth 1) are one node each, all blocks open when `depth` is None."""
    root = low.root
    graph = Graph(root.signature)
    walker = _Walker(graph, depth)
    sources = []
    for name, v in zip(root.input_names, root.inputs):
        node = walker.node(f"input {name}", _type_text(v.type), 0, "input", ())
        sources.append((node.id, v.type))
    outs = walker.module(root, sources, {}, "", (), 0)
    for i, (src, t) in enumerate(outs):
        name = "output" if len(outs) == 1 else f"output {i}"
        node = walker.node(name, _type_text(t), 0, "output", ())
        graph.edges.append((src, node.id, fmt_shape(t.shape)))
    return graph


def _type_text(t: T) -> str:
    return fmt_shape(t.shape) + ("" if t.dtype == "float" else f" {t.dtype}")


def _params(child) -> int:
    """What the summary counts for a child: every parameter it owns, before tying."""
    return sum(numel(s) for _, s in iter_params(child))


class _Walker:
    def __init__(self, graph: Graph, depth: int | None):
        self.graph, self.depth = graph, depth

    def node(self, title, detail, params, role, cluster) -> Node:
        node = Node(f"n{len(self.graph.nodes)}", title, detail, params, role, cluster)
        self.graph.nodes.append(node)
        return node

    def connect(self, sources: list[Source], dst: str) -> None:
        for src, t in sources:
            self.graph.edges.append((src, dst, fmt_shape(t.shape)))

    def module(self, module: ModuleDef, args: list[Source], kwargs: dict[str, Source],
               prefix: str, cluster: tuple[int, ...], level: int) -> list[Source]:
        """Draw a module's ops; returns the sources of its outputs."""
        env: dict[int, Source] = {}
        for i, (name, v) in enumerate(zip(module.input_names, module.inputs)):
            src = args[i] if i < len(args) else kwargs.get(name)
            if src is not None:
                env[id(v)] = src
        called: set[int] = set()
        for op in module.ops:
            ins = [env[id(v)] for v in op.args if id(v) in env]
            kw = {k: env[id(v)] for k, v in op.kwargs.items() if id(v) in env}
            if op.target is None:
                node = self.node(op.layer.kind, "", 0, "op", cluster)
                self.connect(ins + list(kw.values()), node.id)
                outs: list[Source] = [(node.id, v.type) for v in op.outs]
            else:
                shared = id(op.target) in called or op.reuse
                called.add(id(op.target))
                name = prefix + module.child_name(op.target)
                outs = self.child(op.target, op, name, ins, kw, cluster, level, env, shared)
            for v, src in zip(op.outs, outs):
                env[id(v)] = (src[0], v.type)
        return [env[id(v)] for v in module.outputs if id(v) in env]

    def child(self, child, op: Op | None, name: str, ins: list[Source], kw: dict[str, Source],
              cluster: tuple[int, ...], level: int, env: dict[int, Source],
              shared: bool = False) -> list[Source]:
        """Draw one child (leaf, list or block) called on `ins`; returns its output sources."""
        params = 0 if shared else _params(child)
        title = name + (" (shared)" if shared else "")
        if isinstance(child, Leaf):
            node = self.node(title, child.kind, params, "layer", cluster)
            self.connect(ins + list(kw.values()), node.id)
            return [(node.id, t) for t in _leaf_outs(child, op)]
        detail = "sequential" if isinstance(child, Seq) else child.signature
        if self.depth is not None and level + 1 > self.depth:
            node = self.node(title, detail, params, "block", cluster)
            self.connect(ins + list(kw.values()), node.id)
            return [(node.id, t) for t in _child_outs(child, op)]
        self.graph.clusters.append(Cluster(title, detail, params))
        inner = cluster + (len(self.graph.clusters) - 1,)
        if isinstance(child, Seq):
            return self.seq(child, name + ".", ins, inner, level + 1, env)
        return self.module(child, ins, kw, name + ".", inner, level + 1)

    def seq(self, seq: Seq, prefix: str, ins: list[Source], cluster: tuple[int, ...],
            level: int, env: dict[int, Source]) -> list[Source]:
        cur = ins
        for i, item in enumerate(seq.items):
            # an item's extra tensors (a mask) are values of the module that calls the list
            positional, keywords = seq.item_args(i)
            args = cur + [env[id(v)] for v in positional if id(v) in env]
            kw = {k: env[id(v)] for k, v in keywords.items() if id(v) in env}
            cur = self.child(item, None, prefix + seq.item_name(i), args, kw, cluster, level, env)
        return cur


def _leaf_outs(leaf: Leaf, op: Op | None) -> list[T]:
    if op is not None:
        return [v.type for v in op.outs]
    out = leaf.layer.infer(leaf.ins)
    return list(out) if isinstance(out, tuple) else [out]


def _child_outs(child, op: Op | None) -> list[T]:
    if op is not None:
        return [v.type for v in op.outs]
    if isinstance(child, ModuleDef):
        return [v.type for v in child.outputs]
    if child.outs:
        return list(child.outs)
    last = child.items[-1]
    return _leaf_outs(last, None) if isinstance(last, Leaf) else _child_outs(last, None)


# ---- DOT ---------------------------------------------------------------------------------------

def dot_string(text: str) -> str:
    """`text` as a DOT double-quoted string: quotes and backslashes escaped (so no escString
    sequence such as \\N or \\l of the user's reaches Graphviz), line breaks as \\n."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return '"' + text.replace("\n", "\\n") + '"'


_STYLE = {"input": 'shape=ellipse, style=filled, fillcolor="#dbeafe"',
          "output": 'shape=ellipse, style=filled, fillcolor="#dcfce7"',
          "block": 'shape=box3d, style=filled, fillcolor="#fef3c7"',
          "op": 'shape=box, style="rounded,filled", fillcolor="#f3f4f6"',
          "layer": 'shape=box, style="rounded,filled", fillcolor="#ffffff"'}


def dot_text(graph: Graph) -> str:
    """The graph as Graphviz DOT source (for `dot -Tsvg` or any DOT viewer)."""
    out = ["digraph nnspec {",
           f"  label={dot_string(graph.name)}; labelloc=t; rankdir=TB;",
           '  node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=9];']
    by_cluster: dict[tuple[int, ...], list[Node]] = {}
    for node in graph.nodes:
        by_cluster.setdefault(node.cluster, []).append(node)
    parents = {(): []}  # cluster path -> child cluster paths, in order
    for node in graph.nodes:
        for i in range(1, len(node.cluster) + 1):
            path, parent = node.cluster[:i], node.cluster[:i - 1]
            if path not in parents:
                parents[path] = []
                parents.setdefault(parent, []).append(path)

    def emit(path: tuple[int, ...], indent: str) -> None:
        for node in by_cluster.get(path, ()):
            out.append(f"{indent}{node.id} [label={dot_string(chr(10).join(node.lines))}, "
                       f"{_STYLE[node.role]}];")
        for sub in parents.get(path, ()):
            c = graph.clusters[sub[-1]]
            out.append(f"{indent}subgraph cluster_{sub[-1]} {{")
            out.append(f"{indent}  label={dot_string(c.label)}; style=rounded; color=\"#9ca3af\";")
            emit(sub, indent + "  ")
            out.append(f"{indent}}}")

    emit((), "  ")
    for src, dst, label in graph.edges:
        out.append(f"  {src} -> {dst} [label={dot_string(label)}];")
    out.append("}")
    return "\n".join(out) + "\n"
