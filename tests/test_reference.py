"""The generated reference pages are the registry's and the parser's, and every layer kind
documents itself."""
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.cli import build_parser, main
from nnspec.layers import REGISTRY
from nnspec.emit.reference import (CLI, LAYERS, between_markers, cli_markdown, reference_markdown,
                                   update_page)

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run: python scripts/docs_pages.py"


def test_layer_page_is_generated_from_the_registry():
    text = (ROOT / "docs" / "layers.md").read_text(encoding="utf-8")
    assert between_markers(text, LAYERS) == "\n" + reference_markdown(), REGENERATE


def test_cli_page_is_generated_from_the_parser():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert between_markers(text, CLI) == "\n" + cli_markdown(build_parser()), REGENERATE


def test_cli_page_lists_every_subcommand_and_option():
    page = cli_markdown(build_parser())
    for name, command in build_parser()._subparsers._group_actions[0].choices.items():
        assert f"### nnspec {name}\n" in page
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}" in page, (name, flag)


def test_update_page_keeps_the_prose_around_the_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nintro\n\n{LAYERS[0]}\nold\n{LAYERS[1]}\n\nafter\n", encoding="utf-8")
    assert update_page(str(page), LAYERS, "new\n")
    assert page.read_text(encoding="utf-8") == \
        f"# Title\n\nintro\n\n{LAYERS[0]}\nnew\n{LAYERS[1]}\n\nafter\n"
    assert not update_page(str(page), LAYERS, "new\n")  # unchanged the second time


def test_update_page_refuses_a_page_without_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        update_page(str(page), LAYERS, "new\n")
    assert page.read_text(encoding="utf-8") == "# no markers\n"


def test_docs_pages_script_finds_a_stale_page():
    """--check compares without writing; the committed pages are current."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_pages.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_kind_is_documented():
    for kind, cls in REGISTRY.items():
        assert cls.__doc__ and cls.__doc__.strip(), kind
        assert f"`{kind}(" in reference_markdown()
        for name, field in cls.model_fields.items():
            assert field.description, f"{kind}.{name} has no description"


def test_layers_command_prints_the_reference(capsys):
    assert main(["layers"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_module_command_regenerates_a_layer_page(tmp_path, capsys):
    from nnspec.emit.reference import main as reference_main

    page = tmp_path / "layers.md"
    page.write_text(f"# Layers\n{LAYERS[0]}\n{LAYERS[1]}\n", encoding="utf-8")
    assert reference_main([str(page)]) == 0
    assert between_markers(page.read_text(encoding="utf-8"), LAYERS) == "\n" + reference_markdown()
    assert capsys.readouterr().out == "updated\n"
    assert reference_main([]) == 2
