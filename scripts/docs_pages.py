"""Regenerate the generated parts of the docs: the layer reference, the CLI reference and the
picture of a network in the README (`nnspec graph`).

    python scripts/docs_pages.py          # rewrite docs/layers.md and docs/cli.md between markers,
                                          # and docs/img/gpt2_small.svg
    python scripts/docs_pages.py --check  # exit 1 when any of them is out of date (what CI tests)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnspec.cli import build_parser  # noqa: E402
from nnspec.emit.reference import CLI, LAYERS, between_markers, cli_markdown, reference_markdown  # noqa: E402


def pages() -> dict[Path, tuple[tuple[str, str], str]]:
    """Each generated page: its markers and the text that belongs between them."""
    return {ROOT / "docs" / "layers.md": (LAYERS, reference_markdown()),
            ROOT / "docs" / "cli.md": (CLI, cli_markdown(build_parser()))}


# the README's picture: GPT-2 small cut to two blocks, each block drawn open one level deep
PICTURE = ROOT / "docs" / "img" / "gpt2_small.svg"


def picture() -> bytes:
    from nnspec.compile import load
    from nnspec.emit.graph_render import render

    spec = load(ROOT / "specs" / "gpt2_small.nn", n_layer=2)
    return render(spec.lowered, "svg", depth=3)


def main(argv: list[str]) -> int:
    from nnspec.emit.reference import update_page

    stale = []
    image = picture()
    if not PICTURE.exists() or PICTURE.read_bytes() != image:
        stale.append(PICTURE.relative_to(ROOT))
        if "--check" not in argv:
            PICTURE.parent.mkdir(exist_ok=True)
            PICTURE.write_bytes(image)
    for path, (markers, content) in pages().items():
        if between_markers(path.read_text(encoding="utf-8"), markers) != "\n" + content:
            stale.append(path.relative_to(ROOT))
            if "--check" not in argv:
                update_page(str(path), markers, content)
    verb = "out of date" if "--check" in argv else "updated"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
