"""Shared settings for the training tests: one intra-op thread (tiny models run fastest so, and
two threads on a busy two-core machine stall each other), and helpers to build sections."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from nnspec.lang.config import Call, ParallelSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a launch of the deepspeed runner that only adds "
                            "coverage (deselect with -m 'not slow' to save about 2 minutes)")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sections(**train) -> tuple[TrainSpec, ParallelSpec]:
    """TrainSpec from keyword arguments, with `optimizer=("adamw", {"lr": 3e-3})` shorthand."""
    for key in ("optimizer", "schedule", "loss", "data"):
        if isinstance(train.get(key), tuple):
            name, kwargs = train[key]
            train[key] = Call(name=name, kwargs=kwargs)
        elif isinstance(train.get(key), str):
            train[key] = Call(name=train[key])
    return TrainSpec(**train), ParallelSpec()


def subprocess_env() -> dict[str, str]:
    """The environment for `python -m nnspec.train` children: one thread, the repo importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


PYTHON = sys.executable
