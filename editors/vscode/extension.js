// The nnspec extension: .nn files get the TextMate grammar (package.json) and nnspec's language
// server, started as `nnspec lsp` (setting nnspec.server.command) and spoken to over stdio.
// Plain CommonJS, so the folder runs as it is after `npm install`: no build step.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("nnspec");
  const [command, ...args] = config.get("server.command");
  const server = { command, args };
  const maxParams = config.get("maxParams");
  client = new LanguageClient("nnspec", "nnspec language server", server, {
    documentSelector: [
      { scheme: "file", language: "nnspec" },
      { scheme: "untitled", language: "nnspec" },
    ],
    // `nnspec check --max-params`: the server refuses larger models, as the CLI does
    initializationOptions: maxParams ? { maxParams } : {},
  });
  context.subscriptions.push(client);
  return client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `nnspec: could not start \`${[command, ...args].join(" ")}\` (${err.message}); ` +
        "install nnspec with its lsp extra (pip install 'nnspec[lsp]') or set nnspec.server.command"
    );
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
