import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the expected files under tests/golden/ from current output")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden") or os.environ.get("NNSPEC_UPDATE_GOLDEN") == "1"


@pytest.fixture
def in_root(monkeypatch):
    """Run with the repository root as cwd, so paths in diagnostics read as a user sees them."""
    monkeypatch.chdir(ROOT)
    return ROOT
