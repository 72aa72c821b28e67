"""Lay out a network Graph top to bottom and draw it as SVG, in pure Python.

A small Sugiyama-style layout: layers by longest path from the inputs (a node with no inputs of
its own is pulled down next to its first consumer), nodes ordered within a layer by their
clusters and then by the barycentre of their predecessors, each layer centred. A cluster is the
rounded rectangle around its nodes and inner clusters; the gaps between layers and between
neighbours grow with the cluster borders that pass between them, so borders and labels fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import re
from xml.sax.saxutils import escape as _escape, quoteattr

from nnspec.emit.graph import Graph, Node

CHAR_W, LINE_H = 6.6, 14.0     # Helvetica at 11px, roughly: widths are estimated, not measured
PAD_X, PAD_Y = 10.0, 6.0       # inside a node box
GAP_X, GAP_Y = 28.0, 34.0      # between neighbouring nodes and layers
BORDER, LABEL_H = 10.0, 18.0   # a cluster's padding, and the band at its top for its label
MARGIN = 16.0


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass
class Placed:
    graph: Graph
    nodes: dict[str, Box] = field(default_factory=dict)
    clusters: dict[int, Box] = field(default_factory=dict)
    layer: dict[str, int] = field(default_factory=dict)
    rows: list[list[str]] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def node_size(node: Node) -> tuple[float, float]:
    lines = node.lines
    return (max(len(t) for t in lines) * CHAR_W + 2 * PAD_X, len(lines) * LINE_H + 2 * PAD_Y)


def layers_of(graph: Graph) -> dict[str, int]:
    """Longest-path layering; sources that are not spec inputs sit just above their consumer."""
    preds: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    succs: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for src, dst, _ in graph.edges:
        preds[dst].append(src)
        succs[src].append(dst)
    layer: dict[str, int] = {}
    for node in graph.nodes:  # nodes are created in data-flow order: predecessors come first
        layer[node.id] = 1 + max((layer[p] for p in preds[node.id]), default=-1)
    for node in reversed(graph.nodes):
        if not preds[node.id] and node.role != "input" and succs[node.id]:
            layer[node.id] = max(layer[node.id], min(layer[s] for s in succs[node.id]) - 1)
    return layer


def layout(graph: Graph) -> Placed:
    layer = layers_of(graph)
    rows: list[list[Node]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in graph.nodes:
        rows[layer[node.id]].append(node)
    preds: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for src, dst, _ in graph.edges:
        preds[dst].append(src)
    order: dict[str, float] = {}
    for row in rows:
        def bary(n: Node) -> float:
            ps = [order[p] for p in preds[n.id] if p in order]
            return sum(ps) / len(ps) if ps else float(len(order))
        row.sort(key=lambda n: (n.cluster, bary(n)))
        for i, n in enumerate(row):
            order[n.id] = i
    placed = Placed(graph, layer=layer, rows=[[n.id for n in row] for row in rows])
    sizes = {n.id: node_size(n) for n in graph.nodes}
    xs = _Columns(graph, rows, layer, sizes).place(())[1]
    y = MARGIN + LABEL_H
    previous: list[Node] = []
    for row in rows:
        y += _opened(previous, row) * (BORDER + LABEL_H) + _closed(previous, row) * BORDER
        for n in row:
            placed.nodes[n.id] = Box(xs[n.id], y, *sizes[n.id])
        y += max((sizes[n.id][1] for n in row), default=0) + GAP_Y
        previous = row
    _cluster_boxes(placed)
    _shift_to_origin(placed, y)
    return placed


class _Columns:
    """Horizontal places, cluster by cluster: a cluster takes one x range over every layer it
    spans, so no other node or cluster is drawn inside its box. Inside a cluster, its own nodes are
    packed left to right in each layer and its inner clusters beside them; a layer or an inner
    cluster that has nothing beside it is centred."""

    def __init__(self, graph: Graph, rows: list[list[Node]], layer: dict[str, int],
                 sizes: dict[str, tuple[float, float]]):
        self.graph, self.layer, self.sizes = graph, layer, sizes
        self.direct: dict[tuple[int, ...], dict[int, list[Node]]] = {}
        self.inner: dict[tuple[int, ...], list[tuple[int, ...]]] = {(): []}
        self.span: dict[tuple[int, ...], tuple[int, int]] = {}
        for row in rows:  # each row is in its drawing order already
            for n in row:
                self.direct.setdefault(n.cluster, {}).setdefault(layer[n.id], []).append(n)
        for n in graph.nodes:  # creation order: inner clusters in the order the spec calls them
            for path in _prefixes(n.cluster):
                if path not in self.inner:
                    self.inner[path] = []
                    self.inner[path[:-1]].append(path)
                lo, hi = self.span.get(path, (layer[n.id], layer[n.id]))
                self.span[path] = (min(lo, layer[n.id]), max(hi, layer[n.id]))

    def place(self, path: tuple[int, ...]) -> tuple[float, dict[str, float]]:
        """The width of a cluster's content and each node's x in it (0 at its left)."""
        fill: dict[int, float] = {}
        xs: dict[str, float] = {}
        for row, nodes in self.direct.get(path, {}).items():
            for n in nodes:
                x = fill[row] + GAP_X if row in fill else 0.0
                xs[n.id], fill[row] = x, x + self.sizes[n.id][0]
        kids = []
        for kid in self.inner[path]:
            width, inner = self.place(kid)
            label_w = len(self.graph.clusters[kid[-1]].label) * CHAR_W + 12
            w = max(width + 2 * BORDER, label_w)
            rows = range(self.span[kid][0], self.span[kid][1] + 1)
            x = max((fill[r] + GAP_X if r in fill else 0.0) for r in rows)
            for r in rows:
                fill[r] = x + w
            kids.append((rows, x, w, inner))
        total = max(fill.values(), default=0.0)
        spanned: dict[int, int] = {}  # row -> how many inner clusters span it
        for rows, *_ in kids:
            for r in rows:
                spanned[r] = spanned.get(r, 0) + 1
        for row, nodes in self.direct.get(path, {}).items():
            if row not in spanned:  # only this cluster's own nodes: centre them
                for n in nodes:
                    xs[n.id] += (total - fill[row]) / 2
        for rows, x, w, inner in kids:
            alone = all(r not in self.direct.get(path, {}) and spanned[r] == 1 for r in rows)
            x = (total - w) / 2 if alone else x
            for node_id, nx in inner.items():
                xs[node_id] = x + (w - width) / 2 + nx  # centred under a wider label
        return total, xs


def _opened(above: list[Node], below: list[Node]) -> int:
    """How many clusters begin at `below`: their labels need room above it."""
    seen = {c for n in above for c in _prefixes(n.cluster)}
    return max((sum(1 for c in _prefixes(n.cluster) if c not in seen) for n in below), default=0)


def _closed(above: list[Node], below: list[Node]) -> int:
    seen = {c for n in below for c in _prefixes(n.cluster)}
    return max((sum(1 for c in _prefixes(n.cluster) if c not in seen) for n in above), default=0)


def _prefixes(path: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [path[:i] for i in range(1, len(path) + 1)]


def _cluster_boxes(placed: Placed) -> None:
    """Each cluster's box: around its own nodes and its inner clusters, innermost first."""
    members: dict[tuple[int, ...], list[Box]] = {}
    for node in placed.graph.nodes:
        for path in _prefixes(node.cluster):
            members.setdefault(path, []).append(placed.nodes[node.id])
    for path in sorted(members, key=len, reverse=True):
        boxes = members[path] + [placed.clusters[p[-1]] for p in members
                                 if len(p) == len(path) + 1 and p[:-1] == path]
        x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
        x1, y1 = max(b.x + b.w for b in boxes), max(b.y + b.h for b in boxes)
        label_w = len(placed.graph.clusters[path[-1]].label) * CHAR_W + 12
        w = max(x1 - x0 + 2 * BORDER, label_w)  # as wide as _Columns made room for
        placed.clusters[path[-1]] = Box((x0 + x1 - w) / 2, y0 - BORDER - LABEL_H, w,
                                        y1 - y0 + 2 * BORDER + LABEL_H)


def _shift_to_origin(placed: Placed, bottom: float) -> None:
    boxes = list(placed.nodes.values()) + list(placed.clusters.values())
    left = min((b.x for b in boxes), default=0.0)
    title_w = len(placed.graph.name) * CHAR_W * 1.2
    right = max([b.x + b.w for b in boxes] + [left + title_w])
    for b in boxes:
        b.x += MARGIN - left
    placed.width = right - left + 2 * MARGIN
    placed.height = bottom - GAP_Y + MARGIN


def edge_points(placed: Placed, src: str, dst: str) -> tuple[float, float, float, float]:
    """From the bottom centre of `src` to the top centre of `dst`."""
    a, b = placed.nodes[src], placed.nodes[dst]
    return a.x + a.w / 2, a.y + a.h, b.x + b.w / 2, b.y


def edge_route(placed: Placed, src: str, dst: str) -> list[tuple[float, float]]:
    """The polyline of an edge: straight down to the next layer, or for an edge that skips
    layers (a residual connection) out to the right of the nodes it passes, then back in."""
    x0, y0, x1, y1 = edge_points(placed, src, dst)
    between = [placed.nodes[n] for row in placed.rows[placed.layer[src] + 1:placed.layer[dst]]
               for n in row]
    lo, hi = min(x0, x1), max(x0, x1)
    if not any(b.x < hi + 6 and b.x + b.w > lo - 6 for b in between):
        return [(x0, y0), (x1, y1)]
    side = max(b.x + b.w for b in between) + 14
    return [(x0, y0), (side, y0 + GAP_Y / 2), (side, y1 - GAP_Y / 2), (x1, y1)]


def edge_labels(placed: Placed) -> list[str]:
    """Each edge's shape text, blank on the second and later edges that leave one node with the
    same shape (they start at one point: one label says it)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for src, _, label in placed.graph.edges:
        out.append("" if (src, label) in seen else label)
        seen.add((src, label))
    return out


def label_point(route: list[tuple[float, float]]) -> tuple[float, float]:
    """Where an edge's shape goes: beside its start, clear of any cluster label at its end."""
    (x0, y0), (x1, _) = route[0], route[1]
    return (x0 + x1) / 2 + 4, y0 + 12


# characters XML 1.0 does not allow at all, even escaped; a quoted name may hold them
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    """`text` as XML character data: markup escaped, characters XML cannot hold as U+FFFD."""
    return _escape(_NOT_XML.sub("\ufffd", text))


FILL = {"input": "#dbeafe", "output": "#dcfce7", "block": "#fef3c7", "op": "#f3f4f6",
        "layer": "#ffffff"}


def svg_text(placed: Placed) -> str:
    """The laid-out graph as a standalone SVG document; every user string is XML-escaped."""
    g = placed.graph
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{placed.width:.0f}" '
           f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#4b5563"/>'
           '</marker></defs>',
           f'<title>{escape(g.name)}</title>',
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="13" font-weight="bold">'
           f'{escape(g.name)}</text>']
    for i, c in enumerate(g.clusters):
        b = placed.clusters.get(i)
        if b is None:  # a block with no ops of its own (an empty list) draws no box
            continue
        out.append(f'<g class="cluster"><title>{escape(c.label)}</title>'
                   f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                   'rx="8" fill="#f9fafb" fill-opacity="0.5" stroke="#9ca3af"/>'
                   f'<text x="{b.x + 6:.1f}" y="{b.y + 13:.1f}" fill="#374151">'
                   f'{escape(c.label)}</text></g>')
    for (src, dst, _), label in zip(g.edges, edge_labels(placed)):
        route = edge_route(placed, src, dst)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in route)
        lx, ly = label_point(route)
        out.append(f'<g class="edge"><polyline points="{points}" fill="none" stroke="#4b5563" '
                   'stroke-linejoin="round" marker-end="url(#arrow)"/>'
                   f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="9" '
                   f'fill="#6b7280">{escape(label)}</text></g>')
    for node in g.nodes:
        b = placed.nodes[node.id]
        rx = b.h / 2 if node.role in ("input", "output") else 4
        out.append(f'<g class="node {node.role}" id={quoteattr(node.id)}>'
                   f'<title>{escape(chr(10).join(node.lines))}</title>'
                   f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                   f'rx="{rx:.1f}" fill="{FILL[node.role]}" stroke="#374151"/>')
        for i, line in enumerate(node.lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            out.append(f'<text x="{b.x + b.w / 2:.1f}" y="{b.y + PAD_Y + (i + 0.8) * LINE_H:.1f}" '
                       f'text-anchor="middle"{weight}>{escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
