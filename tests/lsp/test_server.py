"""`nnspec lsp` in a real LSP session: pygls' client starts `python -m nnspec lsp` and speaks
JSON-RPC to it over stdio, as an editor does. One server serves every test of this module."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the lsp extra: pip install -e '.[lsp]'")

from lsprotocol import types as lsp  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0  # seconds any one answer may take (the first check imports the checker)
MAX_PARAMS = 20_000_000_000  # what the session asks for: above nnspec's default of 10B

BROKEN = """\
model net {
  input x: float[3, 32, 32]
  conv: conv2d(16, kernal=3)
  flatten
  fc: linear(10)
}
"""
FIXED = BROKEN.replace("kernal=3", "kernel_size=3")

BLOCKS = """\
# a library of blocks

block Mix(width) {
  in x
  out x -> fc: linear(width) -> relu
}
"""
USER = """\
use "blocks.nn"

model two {
  input x: float[8]
  a: Mix(16)
  b: Mix(4)
  head: linear(2)
}
"""

# a GPT-2 of gpt2-like blocks, split over 2 tensor-parallel ranks: it checks, with a warning
TENSOR = """\
use "gpt.nn"

model tiny(vocab_size = 32, seq = 16, n_embd = 32, n_layer = 2, n_head = 4) {
  input input_ids: long[seq]
  transformer: GPT2Model(vocab_size, seq, n_embd, n_layer, n_head, 0.0)
  lm_head: linear(vocab_size, bias=false)
}

parallel {
  tensor = 2
}
"""


class Session:
    """A pygls client talking to `python -m nnspec lsp` on an event loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = LanguageClient("nnspec-tests", "1")
        self.diagnostics: dict[str, list[lsp.PublishDiagnosticsParams]] = {}
        self.versions: dict[str, int] = {}

        @self.client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: lsp.PublishDiagnosticsParams) -> None:
            self.diagnostics.setdefault(params.uri, []).append(params)

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.run(self.client.start_io(sys.executable, "-m", "nnspec", "lsp", env=env, cwd=ROOT))
        # the server's log, read as it comes: a full pipe would stop the server mid-write
        self.stderr: list[str] = []
        self.drain = self.loop.create_task(self._drain(self.client._server.stderr))
        self.run(self.client.initialize_async(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), root_uri=ROOT.as_uri(),
            initialization_options={"maxParams": MAX_PARAMS})))
        self.client.initialized(lsp.InitializedParams())

    async def _drain(self, stream) -> None:
        while line := await stream.readline():
            self.stderr.append(line.decode(errors="replace"))

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    def close(self) -> None:
        self.run(self.client.shutdown_async(None))
        self.client.exit(None)
        self.run(self.client.stop())
        self.run(self.drain)
        self.loop.close()

    def open(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.diagnostics.pop(uri, None)
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri, "nnspec", 1, text)))
        return uri

    def change(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(self.versions[uri], uri),
            [lsp.TextDocumentContentChangeWholeDocument(text)]))

    def published(self, uri: str) -> list[lsp.Diagnostic]:
        """The diagnostics published for the document's latest version."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for params in self.diagnostics.get(uri, []):
                if params.version == self.versions[uri]:
                    return list(params.diagnostics)
            self.run(asyncio.sleep(0.02))
        raise AssertionError(f"no diagnostics for version {self.versions[uri]} of {uri}")

    def republished(self, uri: str, after: int) -> list[lsp.Diagnostic]:
        """The diagnostics published for the document after the first `after` publications."""
        deadline = time.monotonic() + TIMEOUT
        while len(self.diagnostics.get(uri, [])) <= after:
            assert time.monotonic() < deadline, f"no new diagnostics for {uri}"
            self.run(asyncio.sleep(0.02))
        return list(self.diagnostics[uri][after].diagnostics)

    def save(self, uri: str) -> None:
        self.client.text_document_did_save(lsp.DidSaveTextDocumentParams(
            lsp.TextDocumentIdentifier(uri)))

    def hover(self, uri: str, line: int, character: int) -> str | None:
        found = self.run(self.client.text_document_hover_async(lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))
        return None if found is None else found.contents.value

    def definition(self, uri: str, line: int, character: int):
        return self.run(self.client.text_document_definition_async(lsp.DefinitionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))

    def complete(self, uri: str, line: int, character: int) -> dict[str, lsp.CompletionItem]:
        found = self.run(self.client.text_document_completion_async(lsp.CompletionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))
        items = found.items if isinstance(found, lsp.CompletionList) else found or []
        return {item.label: item for item in items}


@pytest.fixture(scope="module")
def session():
    s = Session()
    yield s
    s.close()


def test_diagnostics_as_you_type(session, tmp_path):
    uri = session.open(tmp_path / "net.nn", BROKEN)
    [d] = session.published(uri)
    assert d.code == "E0301" and d.severity == lsp.DiagnosticSeverity.Error
    assert "no argument `kernal`" in d.message and "help: did you mean `kernel`?" in d.message
    # `kernal=3` on the third line: 0-based line 2, characters 19 to 27
    assert (d.range.start.line, d.range.start.character) == (2, 19)
    assert (d.range.end.line, d.range.end.character) == (2, 27)
    session.change(uri, FIXED)
    assert session.published(uri) == []


def test_the_client_sets_the_parameter_limit(session, tmp_path):
    # 1e5 * 1e5 weights: over nnspec check's default limit, under the session's
    big = "model big {\n  input x: float[100000]\n  fc: linear(100000)\n}\n"
    uri = session.open(tmp_path / "big.nn", big)
    assert session.published(uri) == []
    session.change(uri, big.replace("linear(100000)", "linear(300000)"))
    [d] = session.published(uri)
    assert d.code == "E0501" and "20,000,000,000" in d.message


def test_positions_are_utf16_units(session, tmp_path):
    # "ü😀" is 2 characters but 3 UTF-16 units: the client counts units
    uri = session.open(tmp_path / "wide.nn", BROKEN.replace('conv:', '"ü😀":'))
    [d] = session.published(uri)
    assert (d.range.start.line, d.range.start.character) == (2, 20)
    session.change(uri, FIXED.replace('conv:', '"ü😀":'))
    assert session.published(uri) == []
    assert "conv2d" in session.hover(uri, 2, 11)  # `conv2d` starts at character 7, unit 8


def test_hover_shows_shapes_and_parameters(session, tmp_path):
    uri = session.open(tmp_path / "net.nn", FIXED)
    assert session.published(uri) == []
    text = session.hover(uri, 2, 10)  # `conv2d(16, kernel_size=3)`: 3*16*9 + 16 parameters
    assert "conv2d" in text and "`[B, 3, 32, 32]` → `[B, 16, 30, 30]`" in text
    assert "448 parameters" in text
    text = session.hover(uri, 3, 3)  # flatten
    assert "`[B, 16, 30, 30]` → `[B, 14400]`" in text


def test_hover_shows_each_shape_set_of_a_block(session, tmp_path):
    (tmp_path / "blocks.nn").write_text(BLOCKS)
    uri = session.open(tmp_path / "user.nn", USER.replace('use "blocks.nn"\n', BLOCKS))
    assert session.published(uri) == []
    text = session.hover(uri, 4, 20)  # `linear(width)` of Mix, used as Mix(16) and Mix(4)
    assert "`[B, 8]` → `[B, 16]` · 144 parameters" in text
    assert "`[B, 16]` → `[B, 4]` · 68 parameters" in text


def test_definition_of_a_block_and_of_a_use(session, tmp_path):
    (tmp_path / "blocks.nn").write_text(BLOCKS)
    uri = session.open(tmp_path / "user.nn", USER)
    assert session.published(uri) == []
    [loc] = session.definition(uri, 4, 6)  # `Mix` of `a: Mix(16)`
    assert loc.uri == (tmp_path / "blocks.nn").as_uri()
    assert (loc.range.start.line, loc.range.start.character) == (2, 6)  # `block Mix(width)`
    # in the file of blocks, which has no model, the shapes come from the spec that uses it
    blocks = session.open(tmp_path / "blocks.nn", BLOCKS)
    assert session.published(blocks) == []
    text = session.hover(blocks, 4, 20)
    assert "`[B, 8]` → `[B, 16]`" in text and "`[B, 16]` → `[B, 4]`" in text
    [loc] = session.definition(uri, 0, 8)  # the path of `use "blocks.nn"`
    assert loc.uri == (tmp_path / "blocks.nn").as_uri() and loc.range.start.line == 0
    assert session.definition(uri, 6, 10) is None  # `linear` is a kind, defined nowhere


def test_errors_in_an_included_file_show_on_its_use(session, tmp_path):
    (tmp_path / "blocks.nn").write_text(BLOCKS.replace("linear(width)", "linear(width, bais=1)"))
    uri = session.open(tmp_path / "user.nn", USER)
    diags = session.published(uri)
    assert diags and all(d.range.start.line == 0 for d in diags)  # on `use "blocks.nn"`
    assert any("blocks.nn:5:" in d.message and "bais" in d.message for d in diags)
    related = diags[0].related_information
    assert related and related[0].location.uri == (tmp_path / "blocks.nn").as_uri()
    # the included file is fixed and saved: the document that uses it is checked again
    blocks = session.open(tmp_path / "blocks.nn", BLOCKS)
    assert session.published(blocks) == []
    (tmp_path / "blocks.nn").write_text(BLOCKS)
    count = len(session.diagnostics[uri])
    session.save(blocks)
    assert session.republished(uri, count) == []


def test_warnings_are_published_as_warnings(session, tmp_path):
    (tmp_path / "gpt.nn").write_text((ROOT / "specs/blocks/gpt.nn").read_text())
    uri = session.open(tmp_path / "tiny.nn", TENSOR)
    [d] = session.published(uri)  # `nnspec check` says ok, and prints this beside it
    assert d.code == "W0713" and d.severity == lsp.DiagnosticSeverity.Warning
    assert (d.range.start.line, d.range.start.character) == (9, 2)  # `tensor = 2`
    assert (d.range.end.line, d.range.end.character) == (9, 12)
    lines = d.message.split("\n")
    assert lines[0] == "tensor 2 splits 8 layers and keeps 8 whole on every rank"
    # the notes list the layers kept whole (they have no place of their own), then the help
    assert "note: `lm_head`: linear: not followed by a row-parallel partner (its output is " \
           "the model's output)" in lines
    assert lines[-1].startswith("help: layers kept whole cost their full memory on every rank")
    # 4 heads do not split in 3: an error, whose note points into the file of blocks
    session.change(uri, TENSOR.replace("tensor = 2", "tensor = 3"))
    [d] = session.published(uri)
    assert d.code == "E0713" and d.severity == lsp.DiagnosticSeverity.Error
    [note] = d.related_information
    assert note.location.uri == (tmp_path / "gpt.nn").as_uri()
    assert note.location.range.start.line == 6  # the `sdpa` of CausalSelfAttention
    session.change(uri, TENSOR.replace("tensor = 2", "tensor = 1"))
    assert session.published(uri) == []


def test_completion_of_kinds_and_arguments(session, tmp_path):
    text = FIXED.replace("  flatten\n", "  y = x -> \n  h = x -> conv2d(\n  flatten\n")
    uri = session.open(tmp_path / "typing.nn", text)
    items = session.complete(uri, 3, len("  y = x -> "))
    assert {"conv2d", "linear", "relu", "batchnorm2d"} <= set(items)
    assert items["conv2d"].documentation.value.startswith("2-d convolution")
    items = session.complete(uri, 4, len("  h = x -> conv2d("))
    assert {"out_channels", "kernel_size", "stride", "padding"} <= set(items)
    assert items["kernel_size"].insert_text == "kernel_size="
    assert "conv2d" not in items
    # an argument already given is not offered again
    session.change(uri, text.replace("conv2d(\n", "conv2d(8, stride=2, \n"))
    items = session.complete(uri, 4, len("  h = x -> conv2d(8, stride=2, "))
    assert "kernel_size" in items and "stride" not in items
    # nothing to complete in a comment or a string
    session.change(uri, text.replace("  y = x -> \n",
                                     '  y = x -> dropout(0.1)  # a conv\n  z = "con\n'))
    assert session.complete(uri, 3, len("  y = x -> dropout(0.1)  # a conv")) == {}
    assert session.complete(uri, 4, len('  z = "con')) == {}


def test_completion_of_a_blocks_parameters(session, tmp_path):
    (tmp_path / "blocks.nn").write_text(BLOCKS)
    uri = session.open(tmp_path / "user.nn", USER)
    assert session.published(uri) == []
    # while a line is being typed the text does not parse: the included blocks are still known
    session.change(uri, USER.replace("head: linear(2)", "head: "))
    assert "Mix" in session.complete(uri, 6, len("  head: "))
    session.change(uri, USER.replace("Mix(4)", "Mix("))
    assert set(session.complete(uri, 5, len("  b: Mix("))) == {"width"}


@pytest.mark.parametrize("seed", range(3))
def test_random_text_never_stops_the_server(session, tmp_path, seed):
    import random

    rng = random.Random(seed)
    alphabet = 'model block use in out -> ( ) [ ] { } : = " f" # 1 2.5 x conv2d \n\t\\ é 😀 \x00'
    text = "".join(rng.choice(alphabet.split(" ") + [" "]) for _ in range(400))
    uri = session.open(tmp_path / f"junk{seed}.nn", text)
    session.published(uri)  # a diagnostic list, whatever it holds
    lines = text.split("\n")
    for line in range(0, len(lines), 3):
        session.hover(uri, line, len(lines[line]) // 2)
        session.definition(uri, line, 0)
        session.complete(uri, line, len(lines[line]))
    # still answering, and right, and no feature failed on the way
    good = session.open(tmp_path / "after.nn", FIXED)
    assert session.published(good) == []
    assert not [line for line in session.stderr
                if "failed" in line.lower() or "Traceback" in line], session.stderr
