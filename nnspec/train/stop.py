"""Stopping a run cleanly on SIGINT / SIGTERM: finish the step, save a checkpoint, then exit."""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("nnspec.train")


class Stop:
    """SIGINT / SIGTERM ask the loop to stop after the current step and save a checkpoint.

    The same signal twice (Ctrl-C, Ctrl-C) interrupts at once. A terminal's Ctrl-C reaches the
    deepspeed runner and its ranks together, and the runner then sends each rank SIGTERM: a
    different signal, so the ranks still finish the step and save.
    """

    def __init__(self):
        self.requested = False
        self.seen: set[int] = set()

    def __call__(self, signum, frame):
        if signum in self.seen:
            raise KeyboardInterrupt
        self.seen.add(signum)
        if not self.requested:
            self.requested = True
            log.warning("stopping after this step and saving a checkpoint (again to abort)")


@contextmanager
def stop_signals() -> Iterator[Stop]:
    """Install `Stop` for SIGINT and SIGTERM while the loop runs (main thread only)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
