"""Every `nn` example in the README and the docs is checked by nnspec (the rules are in
tests/docs/examples.py), and no spec hides in a fence that is not tagged `nn`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.lang.diagnostics import SpecError
from nnspec.lang.parse import parse
from tests.docs.examples import (ROOT, Fence, console_runs, doc_pages, expected_code, fences,
                                 fragment_text, rule_of, shown_diagnostic)

EXAMPLE = "example.nn"  # the file name of a block that names none
NN_FENCES = [f for page in doc_pages() for f in fences(page) if f.tag == "nn"]
OTHER_FENCES = [f for page in doc_pages() for f in fences(page) if f.tag != "nn"]
CONSOLE_FENCES = [f for f in OTHER_FENCES if f.tag == "console" and console_runs(f)]


def _workspace(tmp: Path, page_fences: list[Fence]) -> None:
    """A folder like the repository's: specs/ and blocks/, and every named file of the page."""
    shutil.copytree(ROOT / "specs", tmp / "specs")
    shutil.copytree(ROOT / "specs" / "blocks", tmp / "blocks")
    for fence in page_fences:
        if fence.tag == "nn" and fence.file:
            (tmp / fence.file).parent.mkdir(parents=True, exist_ok=True)
            (tmp / fence.file).write_text(fence.text, encoding="utf-8")


def _check(tmp: Path, name: str, text: str, capsys) -> tuple[int, str]:
    """`nnspec check NAME` in `tmp` with `text` as the file: the exit code and what it printed."""
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_text(text, encoding="utf-8")
    return _nnspec(tmp, ["check", name], capsys)


def _nnspec(tmp: Path, argv: list[str], capsys) -> tuple[int, str]:
    """`nnspec ARGV` run in `tmp`: the exit code and what it printed (stdout, then stderr)."""
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def check_fence(fence: Fence, page_fences: list[Fence], tmp: Path, capsys) -> None:
    """Apply the rule of one `nn` block; an AssertionError says what is wrong with it."""
    rule = rule_of(fence)
    assert rule, (f"{fence.where}: an nn block that is no whole spec (no `model`), no file "
                  "(`# name.nn` on its first line) and has no <!-- expect: --> or "
                  "<!-- fragment: ... --> note; see tests/docs/examples.py")
    _workspace(tmp, page_fences)
    name = fence.file or EXAMPLE
    if rule == "file":
        users = [f for f in page_fences if f is not fence and any(
            os.path.normpath(os.path.join(os.path.dirname(f.file or EXAMPLE), used)) ==
            os.path.normpath(fence.file) for used in f.uses())]
        assert users, f"{fence.where}: {fence.file} has no model and no block of the page uses it"
        return
    text = fragment_text(fence) if rule == "fragment" else fence.text
    code, printed = _check(tmp, name, text, capsys)
    if rule == "expect":
        want = expected_code(fence)
        assert code == 1 and f"error[{want}]" in printed, \
            f"{fence.where}: expected error[{want}], nnspec check printed:\n{printed}"
        shown = shown_diagnostic(page_fences, fence)
        assert shown is None or printed == shown, \
            f"{fence.where}: the page shows a diagnostic other than nnspec's:\n{printed}"
    else:
        assert code == 0, f"{fence.where}: nnspec check failed:\n{printed}"


@pytest.mark.parametrize("fence", NN_FENCES, ids=[f.where for f in NN_FENCES])
def test_nn_example(fence, tmp_path, capsys):
    check_fence(fence, fences(fence.page), tmp_path, capsys)


def test_the_docs_have_nn_examples():
    pages = {f.page.name for f in NN_FENCES}
    assert {"language.md", "tutorial.md", "architecture.md"} <= pages, pages


@pytest.mark.parametrize("fence", OTHER_FENCES, ids=[f.where for f in OTHER_FENCES])
def test_no_spec_outside_an_nn_fence(fence):
    try:
        tree = parse(fence.text, fence.where)
    except (SpecError, RecursionError):
        return
    assert not fence.has_model or not tree.items, \
        f"{fence.where}: this block is a spec: tag its fence ```nn so the tests check it"


def test_every_fence_says_what_it_holds():
    """An untagged fence escapes every rule above: a fragment of the language written in one
    (five were, in the language reference) would never be checked. Tag it (`nn`, `text`,
    `console`, `python`, `bash`, `json`, ...)."""
    untagged = [f.where for f in OTHER_FENCES if not f.tag]
    assert untagged == [], f"fences without a language tag: {untagged}"


@pytest.mark.parametrize("fence", CONSOLE_FENCES, ids=[f.where for f in CONSOLE_FENCES])
def test_console_example(fence, tmp_path, capsys):
    """A shown `nnspec check|summary|compile` prints what the page says it prints."""
    _workspace(tmp_path, fences(fence.page))
    for argv, shown in console_runs(fence):
        _, printed = _nnspec(tmp_path, argv, capsys)
        assert printed == shown, f"{fence.where}: `nnspec {' '.join(argv)}` printed:\n{printed}"
