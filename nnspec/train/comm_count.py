"""Counting what engine ddp sends: the all-reduces of torch's DDP communication hooks and of its
model averager, counted where they are made.

torch's hooks (ddp_comm_hooks.default_hooks, .powerSGD_hook, and post_localSGD_hook through
default_hooks) and the averager (model_averaging.utils) all call `dist.all_reduce`, some of them
inside future callbacks that run on the collective's thread. Each of those modules sees, while a
DDP run lasts, a `torch.distributed` whose all_reduce counts calls and bytes before calling the
real one, so every all-reduce they make is counted, including PowerSGD's P, Q and uncompressed
tensors, and nothing else is (the loop's own loss and evaluation all-reduces are not training
communication). A hook with no Python all-reduce would go uncounted, so engine ddp always
registers one: `allreduce_hook`, torch's Python twin of DDP's built-in all-reduce.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

import torch
import torch.distributed

HOOK_MODULES = ("torch.distributed.algorithms.ddp_comm_hooks.default_hooks",
                "torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook",
                "torch.distributed.algorithms.model_averaging.utils")


class CommCounter:
    """All-reduce calls and bytes (each rank's contribution), over the run and after warm-up."""

    FIELDS = ("calls", "bytes", "steps", "steady_calls", "steady_bytes", "steady_steps")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # callbacks count from the collective's thread
        self.calls = self.bytes = 0
        self.steps = self.steady_calls = self.steady_bytes = self.steady_steps = 0
        self._mark = (0, 0)

    def add(self, tensor: torch.Tensor) -> None:
        with self._lock:
            self.calls += 1
            self.bytes += tensor.numel() * tensor.element_size()

    def start_step(self) -> None:
        self._mark = (self.calls, self.bytes)

    def end_step(self, steady: bool) -> None:
        """Close the step begun by start_step; `steady`: past every warm-up, so it counts
        toward the per-step figures."""
        self.steps += 1
        if steady:
            self.steady_steps += 1
            self.steady_calls += self.calls - self._mark[0]
            self.steady_bytes += self.bytes - self._mark[1]

    def report(self) -> dict[str, float]:
        per = max(self.steady_steps, 1)
        return {"allreduce_calls": self.calls, "allreduce_bytes": self.bytes,
                "steps": self.steps, "steady_steps": self.steady_steps,
                "calls_per_step": self.steady_calls / per,
                "bytes_per_step": self.steady_bytes / per}

    def state_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for k in self.FIELDS:
            setattr(self, k, int(state[k]))


class _CountingDistributed:
    """torch.distributed as one hook module sees it: all_reduce counted, the rest as it is."""

    def __init__(self, counter: CommCounter):
        self._counter = counter

    def __getattr__(self, name: str):
        return getattr(torch.distributed, name)

    def all_reduce(self, tensor: torch.Tensor, *args, **kwargs):
        self._counter.add(tensor)
        return torch.distributed.all_reduce(tensor, *args, **kwargs)


def count_hook_collectives(counter: CommCounter) -> Callable[[], None]:
    """Count the hook modules' all-reduces into `counter`; returns the function that stops it."""
    modules = [importlib.import_module(name) for name in HOOK_MODULES]
    for module in modules:
        module.dist = _CountingDistributed(counter)

    def undo() -> None:
        for module in modules:
            module.dist = torch.distributed
    return undo
