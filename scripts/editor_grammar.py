"""Write the editors' TextMate grammar from the language's vocabulary (nnspec/lang/textmate.py).

    python scripts/editor_grammar.py          # rewrite editors/vscode/syntaxes/*.tmLanguage.json
    python scripts/editor_grammar.py --check  # exit 1 when it is out of date (tests/editors too)

Run it after the language gains a keyword, a builtin function or a layer kind.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnspec.lang.textmate import grammar_text  # noqa: E402

GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "nnspec.tmLanguage.json"


def main(argv: list[str]) -> int:
    text = grammar_text()
    current = GRAMMAR.read_text(encoding="utf-8") if GRAMMAR.is_file() else None
    if "--check" in argv:
        if current != text:
            print(f"{GRAMMAR.relative_to(ROOT)} is out of date: "
                  "run python scripts/editor_grammar.py")
            return 1
        return 0
    if current != text:
        GRAMMAR.parent.mkdir(parents=True, exist_ok=True)
        GRAMMAR.write_text(text, encoding="utf-8")
        print(f"wrote {GRAMMAR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
