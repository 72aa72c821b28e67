"""Runtime helper modules that generated code needs beyond torch.nn (channel shuffle, attention,
learned position tables, ...).

Each helper is a self-contained `nn.Module` subclass that uses only `torch`, `nn`, `F` and `math`.
The source emitter copies a helper's source into `model.py` (so that file needs only torch), and
`.build()` runs that same source: one definition serves both.

Importing this package does not import torch: the helpers' names and source text are read from
their files with `ast`, so emitting `model.py` (and `nnspec check`, which emits nothing but goes
through the same modules) stays torch-free. A helper's class is imported, with torch, the first
time `HELPERS[name]` is looked up.
"""
from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path


def _is_module_class(base: ast.expr) -> bool:
    """`nn.Something` as a base class: every helper derives from a torch.nn module."""
    return (isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
            and base.value.id == "nn")


@lru_cache(maxsize=None)
def _helper_files() -> dict[str, tuple[str, str]]:
    """name -> (module, source text) of every helper class, in file then definition order (the
    order importing the modules would give)."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for node in ast.parse(text, filename=str(path)).body:
            if isinstance(node, ast.ClassDef) and any(map(_is_module_class, node.bases)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[node.name] = (path.stem, "".join(lines[first - 1:node.end_lineno]))
    return found


class _Helpers(Mapping):
    """Helper name -> class. Iterating and `in` read only the names; a value imports its module."""

    def __getitem__(self, name: str) -> type:
        module, _ = _helper_files()[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def __iter__(self) -> Iterator[str]:
        return iter(_helper_files())

    def __len__(self) -> int:
        return len(_helper_files())


HELPERS: Mapping[str, type] = _Helpers()


def helper_source(name: str) -> str:
    """The source text of one helper class, as it stands in its module."""
    return _helper_files()[name][1]
