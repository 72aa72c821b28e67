"""`nnspec.train.run`: a spec's model through the training loop (loop.run), or, for a spec with
an ensemble section, its members one by one and the module that combines them (ensemble.py).

The choice sits here, above both, so that the ensemble's trainer can reuse the loop's pieces
without the loop knowing about ensembles.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

from nnspec.train import ensemble, loop


@functools.wraps(loop.run)
def run(spec, *args: Any, **kwargs: Any) -> dict[str, Any]:
    if not getattr(spec, "members", ()):
        return loop.run(spec, *args, **kwargs)
    bound = inspect.signature(loop.run).bind(spec, *args, **kwargs)
    bound.apply_defaults()
    return ensemble.run(**bound.arguments)
