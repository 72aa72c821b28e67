"""The language server's features in-process, on every shipped spec and on broken versions of
them: the analysis matches `nnspec check`, hover finds a layer on the lines that hold one, and no
feature raises at any position of any text (the server would only log it, and answer nothing)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the lsp extra: pip install -e '.[lsp]'")

from nnspec.lsp.analysis import analyse  # noqa: E402
from nnspec.lsp.completion import completions  # noqa: E402
from nnspec.lsp.definition import definition  # noqa: E402
from nnspec.lsp.diagnostics import lsp_diagnostics  # noqa: E402
from nnspec.lsp.hover import count_params, hover_markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.nn"))
BIG = 10 ** 12  # gpt3_13b is over `nnspec check`'s default limit, as it says


def _every_feature(found, line: int, col: int) -> str | None:
    text = hover_markdown(found, line, col)
    definition(found, line, col)
    completions(found, line, col)
    return text


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec(path):
    found = analyse(path.read_text(encoding="utf-8"), path.resolve(), max_params=BIG)
    assert found.diagnostics == [] and len(found.models) == 1
    lines = found.text.split("\n")
    layer_lines = hovered = 0
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        first = len(line) - len(line.lstrip()) + 1
        text = _every_feature(found, i, first)
        if ":" in stripped and "(" in stripped and not stripped.startswith(("#", "model")):
            layer_lines += 1  # `name: kind(...)`, in the model's own body
            hovered += text is not None
    assert hovered >= 0.8 * layer_lines


def test_hover_counts_parameters_as_torch_does():
    path = ROOT / "specs" / "resnet18.nn"
    found = analyse(path.read_text(), path.resolve())
    conv1 = hover_markdown(found, 6, 20)
    assert conv1 == "**conv2d** `[B, 3, 224, 224]` → `[B, 64, 112, 112]` · 9,408 parameters"
    assert count_params(found.models[0]) == 11_689_512  # torchvision's resnet18


MUTATIONS = ("drop a character", "drop a line", "repeat a line", "cut the end", "swap brackets")


def _mutate(text: str, rng: random.Random) -> str:
    how = rng.choice(MUTATIONS)
    lines = text.split("\n")
    at = rng.randrange(len(text))
    if how == "drop a character":
        return text[:at] + text[at + 1:]
    if how == "drop a line":
        del lines[rng.randrange(len(lines))]
    elif how == "repeat a line":
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif how == "cut the end":
        return text[:at]
    else:
        return text.replace("(", "[", 1).replace(")", "]", 1)
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(4))
def test_broken_specs_never_raise(seed):
    rng = random.Random(seed)
    for path in rng.sample(SPECS, 3):
        text = _mutate(path.read_text(encoding="utf-8"), rng)
        found = analyse(text, path.resolve(), max_params=BIG)
        assert all(d.code != "internal" for d in found.diagnostics), found.diagnostics
        lsp_diagnostics(found)
        lines = text.split("\n")
        for _ in range(30):
            line = rng.randrange(1, len(lines) + 1)
            _every_feature(found, line, rng.randrange(1, len(lines[line - 1]) + 2))


def test_warnings_are_the_checkers_and_keep_their_notes():
    import dataclasses

    from lsprotocol import types as lsp

    from nnspec.compile import loads

    path = (ROOT / "specs" / "tiny_gpt_heads.nn").resolve()
    text = path.read_text(encoding="utf-8") + "\nparallel {\n  tensor = 2\n}\n"
    found = analyse(text, path)
    warnings = loads(text, name=str(path), base=path.parent).warnings
    assert [d.code for d in warnings] == ["W0713"] and found.diagnostics == warnings
    [d] = lsp_diagnostics(found)
    assert d.severity == lsp.DiagnosticSeverity.Warning and d.related_information is None
    # a note with a place becomes a related location, as an error's does; one without, a line
    warning = found.diagnostics[0]
    found.diagnostics = [dataclasses.replace(warning, notes=[("set here", warning.span),
                                                             ("placeless", None)])]
    [d] = lsp_diagnostics(found)
    [note] = d.related_information
    assert note.message == "set here" and note.location.uri == path.as_uri()
    assert "\nnote: placeless\nhelp: " in d.message and "set here" not in d.message
