"""`nnspec lsp`: the language server, on pygls, over stdio.

Diagnostics are published as the user types: a change waits CHANGE_DELAY for the next one, so a
burst of keystrokes is checked once. Hover, definition and completion read the analysis of the
document's current text (made on demand when the text changed since the last check). A request
that fails inside nnspec answers nothing and logs why: no input can stop the server.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from nnspec import __version__
from nnspec.lang.check import DEFAULT_MAX_PARAMS
from nnspec.lsp.analysis import Analysis, analyse
from nnspec.lsp.completion import completions
from nnspec.lsp.definition import definition
from nnspec.lsp.diagnostics import lsp_diagnostics
from nnspec.lsp.hover import hover_markdown

CHANGE_DELAY = 0.15  # seconds without a new change before a changed document is checked
log = logging.getLogger("nnspec.lsp")


class NnspecServer(LanguageServer):
    """A LanguageServer that keeps the latest analysis of each open document."""

    def __init__(self) -> None:
        super().__init__("nnspec", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.max_params = DEFAULT_MAX_PARAMS  # the client may raise it (initializationOptions)

    def analysis(self, uri: str, again: bool = False) -> Analysis:
        """The analysis of the document's current text (checked now if it changed, or `again`:
        a file it includes may have changed)."""
        text = self.workspace.get_text_document(uri).source
        found = self.analyses.get(uri)
        if again or found is None or found.text != text:
            path = to_fs_path(uri) if uri.startswith("file:") else None
            found = self.analyses[uri] = analyse(text, Path(path) if path else None, found,
                                                 self.max_params)
        return found

    def to_client(self, uri: str, rng: lsp.Range) -> lsp.Range:
        """A range in the document, from characters to the client's position units."""
        doc = self.workspace.get_text_document(uri)
        return doc.position_codec.range_to_client_units(doc.source.split("\n"), rng)

    def from_client(self, uri: str, position: lsp.Position) -> tuple[int, int]:
        """A client position in the document as nnspec's 1-based (line, column in characters)."""
        doc = self.workspace.get_text_document(uri)
        pos = doc.position_codec.position_from_client_units(doc.source.split("\n"), position)
        return pos.line + 1, pos.character + 1

    async def check_soon(self, uri: str, delay: float, again: bool = False) -> None:
        """Publish the document's diagnostics, unless it changes again within `delay`."""
        version = self.workspace.get_text_document(uri).version
        if delay:
            await asyncio.sleep(delay)
        if uri not in self.workspace.text_documents:
            return  # closed meanwhile
        if self.workspace.get_text_document(uri).version != version:
            return  # the newer change publishes
        found = self.analysis(uri, again)
        diagnostics = lsp_diagnostics(found)
        for d in diagnostics:  # related locations of other files stay in characters
            d.range = self.to_client(uri, d.range)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri, diagnostics, version=version))


def _guarded(handler):
    """A feature handler that logs a failure of its own and answers None, never raising into
    pygls (which would send the client an error for every keystroke)."""
    @functools.wraps(handler)
    async def run(ls: NnspecServer, params):
        try:
            return await handler(ls, params)
        except Exception:  # a bug in a feature: keep serving the others
            log.exception("nnspec lsp: %s failed", handler.__name__)
            return None
    return run


def make_server() -> NnspecServer:
    """A server with every feature registered (a new one per call: tests can hold several)."""
    server = NnspecServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: NnspecServer, params: lsp.InitializeParams) -> None:
        # {"maxParams": N}: `nnspec check --max-params N`, for specs of more than 10B parameters
        options = params.initialization_options
        limit = options.get("maxParams") if isinstance(options, dict) else None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            ls.max_params = limit

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @_guarded
    async def did_open(ls: NnspecServer, params: lsp.DidOpenTextDocumentParams):
        await ls.check_soon(params.text_document.uri, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @_guarded
    async def did_change(ls: NnspecServer, params: lsp.DidChangeTextDocumentParams):
        await ls.check_soon(params.text_document.uri, CHANGE_DELAY)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @_guarded
    async def did_save(ls: NnspecServer, params: lsp.DidSaveTextDocumentParams):
        # the saved file may be included by the other open documents: check them all again
        for uri in list(ls.workspace.text_documents):
            await ls.check_soon(uri, 0, again=True)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @_guarded
    async def did_close(ls: NnspecServer, params: lsp.DidCloseTextDocumentParams):
        ls.analyses.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            params.text_document.uri, []))

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @_guarded
    async def hover(ls: NnspecServer, params: lsp.HoverParams) -> lsp.Hover | None:
        uri = params.text_document.uri
        text = hover_markdown(ls.analysis(uri), *ls.from_client(uri, params.position),
                              others=list(ls.analyses.values()))
        return None if text is None else lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown,
                                                                     text))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @_guarded
    async def goto_definition(ls: NnspecServer, params: lsp.DefinitionParams):
        uri = params.text_document.uri
        found = definition(ls.analysis(uri), *ls.from_client(uri, params.position))
        return [lsp.Location(uri, ls.to_client(uri, rng)) if path is None
                or path == ls.analysis(uri).path else lsp.Location(path.as_uri(), rng)
                for path, rng in found] or None

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                    lsp.CompletionOptions(trigger_characters=["(", ",", ">"]))
    @_guarded
    async def complete(ls: NnspecServer, params: lsp.CompletionParams):
        uri = params.text_document.uri
        items = completions(ls.analysis(uri), *ls.from_client(uri, params.position))
        return lsp.CompletionList(is_incomplete=False, items=items)

    return server


def serve() -> None:
    """Run the server on stdin/stdout until the client exits it."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")  # to stderr
    make_server().start_io()
