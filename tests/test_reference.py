"""The README's layer reference is the registry's, and every layer kind documents itself."""
from pathlib import Path

from nnspec.cli import main
from nnspec.layers import REGISTRY
from nnspec.emit.reference import BEGIN, END, reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_readme_reference_is_generated_from_the_registry():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section == "\n" + reference_markdown(), "run: python -m nnspec.emit.reference README.md"


def test_every_kind_is_documented():
    for kind, cls in REGISTRY.items():
        assert cls.__doc__ and cls.__doc__.strip(), kind
        assert f"`{kind}(" in reference_markdown()
        for name, field in cls.model_fields.items():
            assert field.description, f"{kind}.{name} has no description"


def test_layers_command_prints_the_reference(capsys):
    assert main(["layers"]) == 0
    assert capsys.readouterr().out == reference_markdown()
