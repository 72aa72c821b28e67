"""The `nn` examples of the documentation, read out of the Markdown with the rule that checks each.

For writers of README.md and docs/**/*.md: every fenced block tagged ```nn is checked by
tests/docs/test_examples.py, by exactly one of these rules (a block that fits none fails):

1. **A whole spec** (it declares a `model`) must pass `nnspec check`.
2. **An error example**: an HTML comment `<!-- expect: E0401 -->` on the line before the fence.
   `nnspec check` must fail with that code. When the next fence on the page is a ```text block
   that starts with `error[`, it must be exactly what `nnspec check` prints.
3. **A fragment**: `<!-- fragment: BEFORE ... AFTER -->` before the fence (the comment may span
   lines). The block, put in place of the `...`, must pass `nnspec check`: e.g.
   `<!-- fragment: model m() { input x: float[3, 32, 32] ... } -->` for statements of a body, or
   `<!-- fragment: ... model m() { input x: float[64]; fc: linear(10) } -->` for a `train` section
   (`;` separates statements on one line).
4. **A file**: a block whose first line is a comment naming a `.nn` file (`# blocks/mine.nn`,
   `# specs/resnet18.nn`) is written to that path before any block of its page is checked, so the
   page's other blocks can `use` it. If it has no `model`, a block of its page must `use` it.

Blocks are checked in a temporary folder holding a copy of specs/ (as `specs/`) and of
specs/blocks/ (as `blocks/`), so `use "blocks/resnet.nn"` finds the shipped blocks; a block that is
not a named file is written as `example.nn`. Diagnostics name files relative to that folder.

In ```console blocks, the lines `$ nnspec check|summary|compile|layers ...` are run the same way
(in the page's folder, one folder per block, in order, like a shell session) and must print
exactly the lines below them, up to the next `$` line. Other commands (train, plan, python, ...)
are shown as they were run by hand and are not re-run: they take minutes or need a GPU.

A fence that is not tagged `nn` but holds a whole spec (it parses, with a `model`) fails too: tag
it ```nn so it is checked. Tag other blocks for what they hold: `text`, `console`, `python`, `json`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>```+)(?P<tag>[\w-]*)\s*$")
FILE_LINE = re.compile(r"^#\s*(?P<path>[\w./-]+\.nn)\s*$")
MODEL = re.compile(r"^\s*model\s+\w+", re.MULTILINE)
USE = re.compile(r'^\s*use\s+"(?P<path>[^"]+)"', re.MULTILINE)


@dataclass(frozen=True)
class Fence:
    """One fenced block of a page: where it starts, its tag, its text and the comment above it."""
    page: Path
    line: int  # 1-based line of the opening fence
    tag: str
    text: str
    note: str | None  # the text of an HTML comment that ends on the line before the fence

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"

    @property
    def file(self) -> str | None:
        """The path the block names on its first line (`# blocks/mine.nn`), if any."""
        first = self.text.split("\n", 1)[0]
        match = FILE_LINE.match(first)
        return match["path"] if match else None

    @property
    def has_model(self) -> bool:
        return bool(MODEL.search(self.text))

    def uses(self) -> list[str]:
        return USE.findall(self.text)


def doc_pages() -> list[Path]:
    """README.md and every Markdown page of the docs site."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def fences(page: Path) -> list[Fence]:
    """Every fenced block of `page`, in order."""
    lines = page.read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks = len(opening["indent"]), opening["ticks"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1:end])
        found.append(Fence(page, i + 1, opening["tag"], body + "\n", _note_before(lines, i)))
        i = end + 1
    return found


def _note_before(lines: list[str], fence: int) -> str | None:
    """The text of the HTML comment that ends on the line just before line index `fence`."""
    end = fence - 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    text = "\n".join(lines[start:end + 1])
    return text[text.index("<!--") + 4:text.rindex("-->")].strip()


def rule_of(fence: Fence) -> str:
    """Which rule checks an `nn` block: expect, fragment, spec, or file; '' when none fits."""
    note = fence.note or ""
    if note.startswith("expect:"):
        return "expect"
    if note.startswith("fragment:"):
        return "fragment"
    if fence.has_model:
        return "spec"
    if fence.file:
        return "file"
    return ""


def expected_code(fence: Fence) -> str:
    return fence.note.removeprefix("expect:").strip()


def fragment_text(fence: Fence) -> str:
    """The whole spec a fragment stands for: its block in place of the note's `...`."""
    template = fence.note.removeprefix("fragment:").strip()
    if "..." not in template:
        raise ValueError(f"{fence.where}: a fragment note needs `...` where the block goes")
    before, _, after = template.partition("...")
    return f"{before.rstrip()}\n{fence.text}{after.lstrip()}\n"


def shown_diagnostic(page_fences: list[Fence], fence: Fence) -> str | None:
    """The diagnostic a page prints after an error example: the next fence, if it is one."""
    later = [f for f in page_fences if f.line > fence.line]
    if later and later[0].tag == "text" and later[0].text.startswith("error["):
        return later[0].text
    return None


RUN_SUBCOMMANDS = {"check", "summary", "compile", "layers"}


def console_runs(fence: Fence) -> list[tuple[list[str], str]]:
    """The `nnspec` commands of a console block that the tests run: (argv, the output shown)."""
    import shlex

    runs, lines = [], fence.text.rstrip("\n").split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        if argv and argv[0].endswith("/nnspec"):  # .venv/bin/nnspec
            argv[0] = "nnspec"
        if len(argv) < 2 or argv[0] != "nnspec" or argv[1] not in RUN_SUBCOMMANDS:
            continue
        shown = []
        for later in lines[i + 1:]:
            if later.startswith("$ "):
                break
            shown.append(later)
        runs.append((argv[1:], "\n".join(shown) + "\n" if shown else ""))
    return runs
