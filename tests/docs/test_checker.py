"""The example checker itself fails on broken examples (a check that cannot fail proves nothing)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import examples
from tests.docs.test_examples import check_fence

GOOD = "model m() {\n  input x: float[4]\n  fc: linear(2)\n}\n"


def _run(tmp_path: Path, capsys, text: str) -> None:
    """Check every nn block of a page holding `text`, as test_examples does."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    page_fences = examples.fences(page)
    for i, fence in enumerate(f for f in page_fences if f.tag == "nn"):
        work = tmp_path / f"work{i}"
        work.mkdir()
        check_fence(fence, page_fences, work, capsys)


def test_a_good_spec_passes(tmp_path, capsys):
    _run(tmp_path, capsys, f"```nn\n{GOOD}```\n")


def test_a_broken_spec_fails(tmp_path, capsys):
    with pytest.raises(AssertionError, match="nnspec check failed"):
        _run(tmp_path, capsys, f"```nn\n{GOOD.replace('linear(2)', 'linear(2')}```\n")


def test_an_error_example_must_fail_with_its_code(tmp_path, capsys):
    typo = GOOD.replace("linear", "linaer")
    _run(tmp_path, capsys, f"<!-- expect: E0201 -->\n```nn\n{typo}```\n")
    with pytest.raises(AssertionError, match="expected error"):
        _run(tmp_path / "b", capsys, f"<!-- expect: E0201 -->\n```nn\n{GOOD}```\n")
    with pytest.raises(AssertionError, match="expected error"):  # another code is no match
        _run(tmp_path / "c", capsys, f"<!-- expect: E0401 -->\n```nn\n{typo}```\n")


def test_a_shown_diagnostic_must_be_nnspecs(tmp_path, capsys):
    bad = "# net.nn\nmodel m() {\n  input x: float[4]\n  fc: linaer(2)\n}\n"
    shown = ("error[E0201]: unknown name `linaer`\n --> net.nn:4:7\n  |\n4 |   fc: linaer(2)\n"
             "  |       ^^^^^^\nhelp: did you mean `linear` or `bilinear`? `nnspec layers` lists every layer "
             "kind, those of installed plugins too\n\n1 error found\n")
    page = f"<!-- expect: E0201 -->\n```nn\n{bad}```\n\n```text\n{shown}```\n"
    _run(tmp_path, capsys, page)
    with pytest.raises(AssertionError, match="other than nnspec's"):
        _run(tmp_path / "b", capsys, page.replace("did you mean", "maybe"))


def test_a_fragment_is_checked_in_its_wrapping(tmp_path, capsys):
    note = "<!-- fragment: model m() {\n  input x: float[8]\n... } -->"
    _run(tmp_path, capsys, f"{note}\n```nn\nfc: linear(2)\n```\n")
    with pytest.raises(AssertionError, match="nnspec check failed"):
        _run(tmp_path / "b", capsys, f"{note}\n```nn\nfc: conv2d(2, 3)\n```\n")


def test_a_block_no_rule_covers_fails(tmp_path, capsys):
    with pytest.raises(AssertionError, match="no whole spec"):
        _run(tmp_path, capsys, "```nn\nfc: linear(2)\n```\n")


def test_an_unused_file_block_fails(tmp_path, capsys):
    block = "# blocks/mine.nn\nblock Mine(n) = linear(n)\n"
    with pytest.raises(AssertionError, match="no block of the page uses it"):
        _run(tmp_path, capsys, f"```nn\n{block}```\n")
    used = f'use "blocks/mine.nn"\nmodel m() {{\n  input x: float[4]\n  y: Mine(3)\n}}\n'
    _run(tmp_path / "b", capsys, f"```nn\n{block}```\n\n```nn\n{used}```\n")


def test_a_console_example_must_print_what_it_shows(tmp_path, capsys):
    from tests.docs.test_examples import test_console_example

    page = tmp_path / "page.md"
    spec = "# net.nn\nmodel m() {\n  input x: float[4]\n  fc: linear(2)\n}\n"
    shown = "$ nnspec check net.nn\nok: m(): 10 parameters, 16 FLOPs per sample\n$ nnspec train net.nn\nanything\n"
    page.write_text(f"```nn\n{spec}```\n\n```console\n{shown}```\n", encoding="utf-8")
    console = [f for f in examples.fences(page) if f.tag == "console"][0]
    assert [argv for argv, _ in examples.console_runs(console)] == [["check", "net.nn"]]
    test_console_example(console, tmp_path / "ok", capsys)
    page.write_text(page.read_text(encoding="utf-8").replace("10 parameters", "11 parameters"),
                    encoding="utf-8")
    console = [f for f in examples.fences(page) if f.tag == "console"][0]
    with pytest.raises(AssertionError, match="printed"):
        test_console_example(console, tmp_path / "bad", capsys)
