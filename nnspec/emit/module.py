"""Build torch modules in memory from the generated source.

`.build()` runs exactly the text that `nnspec compile` writes to model.py, so the two can never
disagree and the built module has no interpretive overhead: its forward is plain PyTorch code.
Before it runs, the text is checked against what the emitters can write (emit/verify.py): a spec
is data, and a bug that let spec text become code must fail here rather than run.
"""
from __future__ import annotations

import hashlib
import sys
import types

import torch.nn as nn

from nnspec.emit.verify import verify_source


def load_source(source: str) -> type[nn.Module]:
    """Execute generated model source as a module of its own and return its `Model` class."""
    return load_module(source).Model


def load_module(source: str) -> types.ModuleType:
    """Execute generated source (once per distinct text) as a Python module of its own."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"nnspec_generated_{digest}"
    module = sys.modules.get(name)
    if module is None:
        verify_source(source)
        module = types.ModuleType(name)
        module.__file__ = f"<nnspec generated {digest}>"
        code = compile(source, module.__file__, "exec")
        exec(code, module.__dict__)  # our own emitted text, verified above
        sys.modules[name] = module  # so pickling and torch.save of the module work
    return module
