"""The picture of a checked spec in the format asked for: DOT text, or the graph laid out here and
drawn as SVG or PNG."""
from __future__ import annotations

from nnspec.emit.graph import build_graph, dot_text
from nnspec.ir.lower import Lowered

FORMATS = ("svg", "png", "dot")


def render(low: Lowered, fmt: str = "svg", depth: int | None = None) -> bytes:
    """The picture of `low` in `fmt` (one of FORMATS); `depth` as in build_graph."""
    graph = build_graph(low, depth)
    if fmt == "dot":
        return dot_text(graph).encode()
    from nnspec.emit.graph_layout import layout, svg_text

    placed = layout(graph)
    if fmt == "svg":
        return svg_text(placed).encode()
    from nnspec.emit.graph_png import png_bytes  # Pillow: imported only for a PNG

    return png_bytes(placed)
