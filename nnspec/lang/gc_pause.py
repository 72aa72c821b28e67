"""Pause Python's cyclic garbage collector while a pass builds a large structure.

Parsing and checking allocate many small objects that all stay alive (syntax nodes, values, IR),
and the collector's automatic runs keep traversing them: for a 20,000-line spec they added half
again to the parse and made it grow faster than the input. Nothing these passes drop is cyclic
garbage worth collecting mid-pass, so automatic collection is paused for the pass and resumed
after it (reference counting frees memory as usual). Nested pauses are one pause. Used by the
direct parse, `check`, and `Spec.lowered` and `Spec.partition` (which the summary reads).
"""
from __future__ import annotations

import functools
import gc
from contextlib import contextmanager


@contextmanager
def collection_paused():
    """Automatic cyclic collection off inside the block, back on after it if it was on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def pauses_collection(fn):
    """Decorator: run `fn` inside `collection_paused()`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with collection_paused():
            return fn(*args, **kwargs)
    return wrapper
