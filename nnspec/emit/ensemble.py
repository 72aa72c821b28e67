"""Emit model.py for an ensemble: every member's classes, the Ensemble helper, and one class that
builds the members in order.

Each member's own model.py (emit/source.py) is the unit: its classes are taken whole, a class
two members share with the same text is written once, and a class whose name another member
already uses with a different body (`mlp` and `mlp(hidden=16)` when hidden fixes the structure)
is renamed (`Mlp2`) in that member's text, by tokens, so strings and comments keep their words.
The ensemble's class derives from the runtime helper `Ensemble`, so its state_dict keys are
those of `Spec.build()`: `members.0.fc1.weight`, ..., and `weights` for combine = learned.
"""
from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

from nnspec.emit.source import HEADER, RESERVED_NAMES, _unique
from nnspec.emit.statements import LINE
from nnspec.emit.text import comment_text, doc_text
from nnspec.runtime import HELPERS, helper_source

# the header's import groups in the order emit/source.py writes them
_STD = ("import math", "from collections import OrderedDict")
_TORCH = ("import torch", "import torch.nn as nn", "import torch.nn.functional as F")


@dataclass
class _Parts:
    """One member's model.py cut into what the ensemble's file is made of."""

    imports: list[str]
    chunks: list[tuple[str, str]]  # (class name, its text with any comment lines above it)
    model: str                     # the class `Model` names
    plugins: bool                  # the file needs plugin modules


def emit_ensemble_source(members: list[tuple[str, str]], combine: str, source_name: str,
                         where: str) -> str:
    """model.py of an ensemble. `members`: (the member as the section writes it, its own
    model.py), in order; `where`: "file:line" of the section."""
    used: set[str] = set(RESERVED_NAMES) | set(HELPERS)
    texts: dict[str, str] = {}  # class name -> text, in the order they are written
    helpers: list[str] = []
    imports: list[str] = []
    plugins = False
    calls = []
    parsed: dict[str, tuple[_Parts, dict[str, str]]] = {}
    for label, source in members:
        if source not in parsed:
            parts = _cut(source)
            parsed[source] = (parts, _place(parts, texts, helpers, used))
            imports += [i for i in parts.imports if i not in imports]
            plugins |= parts.plugins
        parts, renames = parsed[source]
        model = renames.get(parts.model, parts.model)
        calls.append((model, label) if isinstance(model, str) else (model[0] + model[1], label))
    if "Ensemble" not in helpers:
        helpers.append("Ensemble")
    name = _unique(calls[0][0] + "Ensemble", used)
    title = _title([label for _, label in calls], combine)
    header = HEADER.format(title=doc_text(title), source=doc_text(source_name))
    if plugins:
        header = header.replace("Needs only PyTorch. ",
                                "Needs PyTorch and the plugin modules imported below.\n")
    parts = [header + _imports(imports), *(helper_source(h) for h in helpers), *texts.values(),
             _ensemble_class(name, calls, combine, where), f"Model = {name}\n"]
    return "\n\n".join(p.rstrip("\n") + "\n" for p in parts)


def _cut(source: str) -> _Parts:
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    imports, chunks, model, end = [], [], "", 0
    for node in tree.body:
        text = "".join(lines[end:node.end_lineno]).lstrip("\n")
        end = node.end_lineno
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.get_source_segment(source, node))
        elif isinstance(node, ast.ClassDef):
            chunks.append((node.name, text))
        elif isinstance(node, ast.Assign) and node.targets[0].id == "Model":
            model = node.value.id
    return _Parts(imports, chunks, model, "plugin modules imported below" in source)


def _place(parts: _Parts, texts: dict[str, str], helpers: list[str], used: set[str]) -> dict:
    """Add one member's classes to `texts` (helpers to `helpers`); the renames it needed. The
    member's own class, when it differs from one already written only in its arguments'
    defaults, is not written again: it maps to (that class, "(hidden=64)")."""
    renames: dict = {}
    for cls, text in parts.chunks:
        if cls in HELPERS and text.strip() == helper_source(cls).strip():
            if cls not in helpers:
                helpers.append(cls)
            continue
        text = _renamed(text, renames)
        if texts.get(cls) == text:
            continue  # the same class another member already brought
        arguments = _other_defaults(texts[cls], text) if cls == parts.model and cls in texts \
            else None
        if arguments is not None:
            renames[cls] = (cls, arguments)
            continue
        if cls in used:  # `used` holds every name in `texts`
            renames[cls] = _unique(cls, used)
            text = _renamed(text, {cls: renames[cls]})
        else:
            used.add(cls)
        texts[renames.get(cls, cls)] = text
    return renames


def _other_defaults(written: str, text: str) -> str | None:
    """The call arguments "(hidden=64)" that make class `written` the class `text`, when the two
    differ only in their docstrings and __init__'s defaults (or their order); else None."""
    def shape(tree: ast.Module) -> tuple[str, dict]:
        cls = tree.body[0]
        assert isinstance(cls, ast.ClassDef)
        if ast.get_docstring(cls) is not None:
            cls.body = cls.body[1:]
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef)
                     and f.name == "__init__"), None)
        if init is None:
            return ast.dump(cls), {}
        names = [a.arg for a in init.args.args[-len(init.args.defaults):]] \
            if init.args.defaults else []
        defaults = {n: ast.unparse(d) for n, d in zip(names, init.args.defaults)}
        init.args.defaults = []  # and the order of the arguments: they are passed by name
        init.args.args = sorted(init.args.args[1:], key=lambda a: a.arg)
        return ast.dump(cls), defaults

    (first, old), (second, new) = shape(ast.parse(written)), shape(ast.parse(text))
    if first != second or old.keys() != new.keys():
        return None
    return "(" + ", ".join(f"{k}={v}" for k, v in new.items() if old[k] != v) + ")"


def _renamed(text: str, renames: dict) -> str:
    """`text` with every name token in `renames` replaced (never inside strings or comments)."""
    renames = {k: v if isinstance(v, str) else v[0] for k, v in renames.items()}
    if not renames:
        return text
    lines = text.splitlines(keepends=True)
    edits = [(tok.start, tok.end, renames[tok.string])
             for tok in tokenize.generate_tokens(io.StringIO(text).readline)
             if tok.type == tokenize.NAME and tok.string in renames]
    for (row, col), (_, end), new in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[end:]
    return "".join(lines)


def _imports(imports: list[str]) -> str:
    """The import groups: the standard library, torch, then any plugin modules. The Ensemble
    helper uses math, torch, nn and F, so those four are always there."""
    have = set(imports) | {"import math", *_TORCH}
    std = [i for i in _STD if i in have]
    plugins = [i for i in imports if i not in _STD and i not in _TORCH]
    return "\n".join("\n".join(g) + "\n" for g in (std, list(_TORCH), plugins) if g)


def _ensemble_class(name: str, calls: list[tuple[str, str]], combine: str, where: str) -> str:
    doc = f'    """{len(calls)} members combined by {combine}, from {doc_text(where)}."""'
    if len(doc) > LINE:
        doc = f'    """{len(calls)} members combined by {combine},\n    from {doc_text(where)}."""'
    lines = [f"class {name}(Ensemble):", doc, "", "    def __init__(self):",
             "        super().__init__(["]
    for i, (call, label) in enumerate(calls):
        call = call if call.endswith(")") else call + "()"
        lines.append(f"            {call},  # member {i}: {comment_text(label)}")
    lines.append(f"        ], combine={combine!r})")
    return "\n".join(lines) + "\n"


def _title(labels: list[str], combine: str) -> str:
    """The docstring's first line: runs of the same member counted (`5 x mlp`), and only the
    member count when the list would not fit on one line (PEP 8's 100 columns with the quotes)."""
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    listed = ", ".join(label if n == 1 else f"{n} x {label}" for label, n in runs)
    title = f"Ensemble of {listed} ({combine}) as PyTorch modules."
    if len(title) + 3 > 100:
        title = f"Ensemble of {len(labels)} members ({combine}) as PyTorch modules."
    return title
