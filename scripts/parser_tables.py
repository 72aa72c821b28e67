"""Regenerate nnspec/lang/lalr_tables.py: the LALR tables of the .nn grammar, built ahead of time
so that `nnspec check` loads them (under 0.01 s) instead of building them (about 0.1 s).

Run it after any change to nnspec/lang/nnspec.lark or to the parser's options in
nnspec/lang/parse.py; until then the parser is built at start-up (slower, never wrong) and
tests/lang/test_lark_tables.py fails.

    python scripts/parser_tables.py          # rewrite the tables
    python scripts/parser_tables.py --check  # exit 1 when they are out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "nnspec" / "lang" / "lalr_tables.py"
sys.path.insert(0, str(ROOT))


def requested() -> tuple[str, dict]:
    """The grammar and options nnspec.lang.parse asks its parser for, as it asks them."""
    from lark import Lark

    from nnspec.lang import parse

    seen: dict = {}

    def capture(grammar: str, **options):
        seen.update(grammar=grammar, options=options)
        return Lark(grammar, **options)

    real = parse.cached_lark
    parse.cached_lark = capture
    try:
        parse._parser.cache_clear()
        parse._parser()
    finally:
        parse.cached_lark = real
        parse._parser.cache_clear()
    return seen["grammar"], seen["options"]


def current() -> bool:
    """Whether lalr_tables.py holds the tables of the parser nnspec asks for."""
    from nnspec.lang.lark_tables import tables_key

    try:
        from nnspec.lang import lalr_tables
    except ImportError:
        return False
    grammar, options = requested()
    return lalr_tables.KEY == tables_key(grammar, options)


def main(argv: list[str]) -> int:
    from nnspec.lang.lark_tables import tables_source

    if "--check" in argv:
        if not current():
            print(f"{TABLES.relative_to(ROOT)} is out of date: run python scripts/parser_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    grammar, options = requested()
    TABLES.write_text(tables_source(grammar, **options), encoding="utf-8")
    print(f"wrote {TABLES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
