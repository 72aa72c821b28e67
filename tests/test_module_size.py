"""No module of nnspec is over 500 lines.

A module that size does several things; split it by concern (as nnspec/lang/check/ was) rather
than raise the limit. Lines are counted as `wc -l` counts them, docstrings and comments included.
"""

from __future__ import annotations

from pathlib import Path

import nnspec

ROOT = Path(nnspec.__file__).resolve().parent
LIMIT = 500


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def test_every_module_is_at_most_500_lines():
    over = {p.relative_to(ROOT).as_posix(): _lines(p) for p in sorted(ROOT.rglob("*.py"))
            if _lines(p) > LIMIT}
    assert not over, "modules over %d lines:\n%s" % (
        LIMIT, "\n".join(f"  nnspec/{name}: {n} lines" for name, n in over.items()))
