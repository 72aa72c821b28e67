"""The VS Code extension folder: its JSON files parse and fit together, and extension.js starts
the language server with the configured command (run under node with a stand-in `vscode`)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "editors" / "vscode"


def _json(name: str) -> dict:
    return json.loads((EXT / name).read_text(encoding="utf-8"))


def test_the_extension_registers_nn_files():
    package = _json("package.json")
    [language] = package["contributes"]["languages"]
    assert language["id"] == "nnspec" and language["extensions"] == [".nn"]
    [grammar] = package["contributes"]["grammars"]
    assert grammar["language"] == "nnspec"
    assert _json(grammar["path"])["scopeName"] == grammar["scopeName"] == "source.nnspec"
    config = _json(language["configuration"])
    assert config["comments"]["lineComment"] == "#"
    assert ["(", ")"] in config["brackets"] and ["[", "]"] in config["brackets"]
    assert (EXT / package["main"]).is_file()
    assert "onLanguage:nnspec" in package["activationEvents"]
    assert "vscode-languageclient" in package["dependencies"]
    default = package["contributes"]["configuration"]["properties"]["nnspec.server.command"]
    assert default["default"] == ["nnspec", "lsp"]


# extension.js activated with stand-ins for `vscode` and `vscode-languageclient/node`: prints
# what it asked the client for
ACTIVATE = r"""
const Module = require("module");
const started = [];
const fakes = {
  "vscode": {
    workspace: { getConfiguration: (s) => ({ get: (k) => s !== "nnspec" ? undefined :
      ({ "server.command": ["/venv/bin/nnspec", "lsp"], "maxParams": 20000000000 })[k] }) },
    window: { showErrorMessage: (m) => started.push({ error: m }) },
  },
  "vscode-languageclient/node": {
    LanguageClient: class {
      constructor(id, name, server, options) { started.push({ id, server, options }); }
      start() { return Promise.resolve(); }
      stop() { return Promise.resolve(); }
    },
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request in fakes ? fakes[request] : load.call(this, request, ...rest);
};
const ext = require(process.argv[2]);
const context = { subscriptions: [] };
Promise.resolve(ext.activate(context)).then(() => {
  console.log(JSON.stringify({ started, subscriptions: context.subscriptions.length }));
});
"""


def test_extension_js_starts_the_configured_server(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: extension.js is only read, not run")
    script = tmp_path / "activate.js"
    script.write_text(ACTIVATE)
    done = subprocess.run([node, str(script), str(EXT / "extension.js")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    [client] = result["started"]
    assert client["id"] == "nnspec"
    assert client["server"] == {"command": "/venv/bin/nnspec", "args": ["lsp"]}
    selectors = client["options"]["documentSelector"]
    assert {"scheme": "file", "language": "nnspec"} in selectors
    assert client["options"]["initializationOptions"] == {"maxParams": 20_000_000_000}
    assert result["subscriptions"] == 1
