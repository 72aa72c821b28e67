"""mkdocs hooks (mkdocs.yml `hooks:`): the docs highlight ```nn blocks with nnspec's own Pygments
lexer. An installed nnspec registers it through its `pygments.lexers` entry point; a checkout
that is not installed (or installed before the lexer existed) gets it registered here, so the
site always shows the lexer of the code it documents. The build fails if `nn` has no lexer."""
from __future__ import annotations

from pygments.lexers import LEXERS, find_lexer_class_by_name
from pygments.util import ClassNotFound

ALIASES = ("nn", "nnspec")


def on_config(config):
    try:
        find_lexer_class_by_name("nn")
    except ClassNotFound:
        from nnspec.lang.pygments_lexer import NnspecLexer as lexer

        # the entry of pygments' own table of lexers: (module, name, aliases, files, mimetypes)
        LEXERS[lexer.__name__] = (lexer.__module__, lexer.name, tuple(lexer.aliases),
                                  tuple(lexer.filenames), tuple(lexer.mimetypes))
    find_lexer_class_by_name("nn")  # raises ClassNotFound: nothing would be highlighted
    return config
