"""Draw a laid-out network Graph as PNG with Pillow (already a dependency): the same boxes,
edges and labels as the SVG, without any system library or binary."""
from __future__ import annotations

import io

import math

from nnspec.emit.graph_layout import (FILL, LINE_H, MARGIN, PAD_Y, Placed, edge_labels,
                                      edge_route, label_point)

SCALE = 2  # drawn at twice the layout's size, so the text stays legible
MAX_PIXELS = 60_000_000  # about 180 MB of RGB in memory; larger pictures are refused


class PictureTooLarge(ValueError):
    """The PNG would need more memory than MAX_PIXELS allows."""


def png_bytes(placed: Placed) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    s = SCALE if placed.width * placed.height * SCALE ** 2 <= MAX_PIXELS else 1
    if placed.width * placed.height > MAX_PIXELS:
        raise PictureTooLarge(f"the PNG would be {placed.width:,.0f} x {placed.height:,.0f} "
                              "pixels; draw fewer nodes with --depth N, or write SVG")
    image = Image.new("RGB", (int(placed.width * s) + 1, int(placed.height * s) + 1), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11 * s)
    small = ImageFont.load_default(size=9 * s)
    g = placed.graph
    draw.text((MARGIN * s, MARGIN * s - 8 * s), _printable(g.name), fill="black", font=font)
    for i, c in enumerate(g.clusters):
        b = placed.clusters.get(i)
        if b is not None:
            draw.rounded_rectangle(_rect(b, s), radius=8 * s, fill="#fbfcfd", outline="#9ca3af",
                                   width=s)
            draw.text(((b.x + 6) * s, (b.y + 3) * s), _printable(c.label), fill="#374151",
                      font=font)
    for (src, dst, _), label in zip(g.edges, edge_labels(placed)):
        route = edge_route(placed, src, dst)
        draw.line([(x * s, y * s) for x, y in route], fill="#4b5563", width=s, joint="curve")
        (xa, ya), (x1, y1) = route[-2], route[-1]
        _arrow(draw, xa * s, ya * s, x1 * s, y1 * s, s)
        lx, ly = label_point(route)
        draw.text((lx * s, (ly - 9) * s), _printable(label), fill="#6b7280", font=small)
    for node in g.nodes:
        b = placed.nodes[node.id]
        radius = b.h / 2 if node.role in ("input", "output") else 4
        draw.rounded_rectangle(_rect(b, s), radius=radius * s, fill=FILL[node.role],
                               outline="#374151", width=s)
        for i, line in enumerate(node.lines):
            draw.text(((b.x + b.w / 2) * s, (b.y + PAD_Y + (i + 0.5) * LINE_H) * s),
                      _printable(line), fill="black", font=font, anchor="mm")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _arrow(draw, xa: float, ya: float, x1: float, y1: float, s: int) -> None:
    """An arrow head at (x1, y1), pointing along the segment from (xa, ya)."""
    angle = math.atan2(y1 - ya, x1 - xa)
    size, spread = 7 * s, 0.45
    draw.polygon([(x1, y1)] + [(x1 - size * math.cos(angle + d), y1 - size * math.sin(angle + d))
                               for d in (spread, -spread)], fill="#4b5563")


def _rect(b, s: int) -> tuple[float, float, float, float]:
    return b.x * s, b.y * s, (b.x + b.w) * s, (b.y + b.h) * s


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "\ufffd" for c in text)
