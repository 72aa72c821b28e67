"""The language server (`nnspec lsp`): nnspec's checker behind the Language Server Protocol.

  analysis.py    check an open document as `nnspec check` would; keep its diagnostics, parse
                 tree, definitions and checked models for the features below
  positions.py   nnspec spans (1-based, characters) to LSP ranges (0-based, the client's units)
  diagnostics.py errors and warnings as LSP diagnostics, an included file's on its `use`
  hover.py       the output shape and parameters of the layer under the cursor
  definition.py  go to a block's or constant's definition, or to the file a `use` names
  completion.py  layer kinds, block names, and a kind's or block's argument names
  server.py      the pygls server that wires them to the protocol; `serve()` runs it on stdio
Only server.py and diagnostics.py know pygls/lsprotocol; nothing here imports torch.
"""
