"""The train setting `compile = true`: torch.compile the model where it trains.

The model is compiled in place (`nn.Module.compile()`; DeepSpeed's `engine.compile()` calls it on
the engine's module, a PipelineModule on each of its layers), not wrapped: a
`torch.compile(model)` wrapper would prefix every state_dict key with `_orig_mod.`, and the
checkpoints, model.safetensors and `export-weights` would no longer load into `build()`. Compiled
in place, they hold the same keys as without compile.

Inductor, torch.compile's default backend, builds code where it runs: C++ on the CPU, Triton
kernels (with C launchers) on GPUs. Without the compiler the first step fails deep inside
inductor; `require_compiler` says so before any work. Dropout under inductor draws its masks from
its own generator (seeded from torch's, so runs stay reproducible and resume to the same
losses; with several CPU threads the resumed weights agree to rounding, not bit for bit), so a
compiled run with dropout follows other masks than an eager one; without random layers the two
agree to rounding.
"""
from __future__ import annotations

import os
import shutil

import torch

from nnspec.train.errors import TrainError

HINT = "install one (e.g. apt-get install g++), or set compile = false in the train section"


def require_compiler(device_type: str) -> None:
    """Raise a TrainError when inductor cannot build code for `device_type` here."""
    if device_type == "cpu":
        from torch._inductor import cpp_builder
        try:
            cpp_builder.get_cpp_compiler()
        except Exception as err:  # noqa: BLE001 - torch raises its own kinds for "none found"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrainError("train setting `compile`: torch.compile needs a C++ compiler on "
                             f"the CPU, and none was found ({first})", HINT) from None
        return
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise TrainError("train setting `compile`: torch.compile needs Triton on GPUs, and "
                             "it is not installed", "pip install triton (the version your torch "
                             "wheel names), or set compile = false") from None
        if not any(shutil.which(c) for c in (os.environ.get("CC", ""), "cc", "gcc", "clang")
                   if c):
            raise TrainError("train setting `compile`: Triton needs a C compiler to build its "
                             "kernel launchers, and none was found", HINT)


def compile_in_place(model: torch.nn.Module, device_type: str) -> None:
    """Compile `model`'s forward with inductor, keeping its state_dict keys."""
    require_compiler(device_type)
    model.compile()
