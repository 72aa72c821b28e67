"""The words of the language, for the tools that colour it (the Pygments lexer, the editors'
TextMate grammar): keywords read from the grammar itself, layer kinds from the registry,
builtin functions, tensor types and section names from the checker. Nothing here imports torch.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

# a keyword in nnspec.lark: a quoted word ("model"), or a word a terminal's regex matches whole
# (`when(?![A-Za-z0-9_])`, a continuation keyword that the grammar has to write as a regex)
_QUOTED = re.compile(r'"([a-z]+)"')
_REGEX_WORD = re.compile(r"([a-z]+)\(\?!\[A-Za-z0-9_\]\)")
_COMMENT = re.compile(r"^\s*//.*$", re.MULTILINE)


@lru_cache(maxsize=None)
def keywords() -> tuple[str, ...]:
    """Every keyword of the grammar (`true` and `false` included), sorted."""
    text = _COMMENT.sub("", files("nnspec.lang").joinpath("nnspec.lark").read_text("utf-8"))
    text = re.sub(r"\s//.*$", "", text, flags=re.MULTILINE)  # comments after a rule
    return tuple(sorted(set(_QUOTED.findall(text)) | set(_REGEX_WORD.findall(text))))


CONSTANTS = ("true", "false")


def kinds() -> tuple[str, ...]:
    """nnspec's own layer kinds (plugins' kinds are an installation's, not the language's)."""
    from nnspec.layers import REGISTRY
    return tuple(sorted(REGISTRY.builtin()))


def builtins() -> tuple[str, ...]:
    """The builtin functions of expressions: channels(x), size(x, d), min, max, int..."""
    from nnspec.lang.check.values import BUILTINS
    return tuple(sorted(BUILTINS))


def dtypes() -> tuple[str, ...]:
    """The element types an input is declared with: float[3, 32, 32], long[128]."""
    from nnspec.lang.check.values import DTYPES
    return tuple(sorted(DTYPES))


def sections() -> tuple[str, ...]:
    """The names of the settings sections: train { ... }, parallel { ... }."""
    from nnspec.lang.resolve import SECTION_NAMES
    return tuple(SECTION_NAMES)
