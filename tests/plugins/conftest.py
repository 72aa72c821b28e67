"""Install the plugin packages beside this file the way a user does, with pip into a folder, so
importlib.metadata finds their entry points for real; then put them on sys.path for one test.

Each package is copied first, so pip's in-tree build leaves nothing behind in tests/plugins.
"""
from __future__ import annotations

import contextlib
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.interp import registry as interp_registry
from nnspec.layers import REGISTRY

HERE = Path(__file__).resolve().parent
ROOT_PATH = HERE.parent.parent  # the checkout, for a subprocess's PYTHONPATH
PACKAGES = {"glu": "nnspec_example_glu", "broken": "nnspec_broken_plugin"}


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Each plugin package of tests/plugins installed by pip into a folder of its own."""
    root = tmp_path_factory.mktemp("plugins")
    targets = {}
    for name in PACKAGES:
        source = root / "src" / name
        shutil.copytree(HERE / name, source)
        targets[name] = root / "site" / name
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                              "--target", str(targets[name]), str(source)],
                             capture_output=True, text=True)
        if pip.returncode:  # say why: e.g. a setuptools older than the test extra asks for
            pytest.fail(f"pip could not install tests/plugins/{name}:\n{pip.stderr}")
    return targets


@contextlib.contextmanager
def on_path(*folders: Path):
    """Make the plugins in `folders` installed for the body, as if pip had put them in the venv;
    afterwards nnspec knows only its own kinds again."""
    sys.path[:0] = [str(f) for f in folders]
    importlib.invalidate_caches()
    REGISTRY.forget_plugins()
    interp_registry.forget_plugins()
    try:
        yield
    finally:
        for f in folders:
            sys.path.remove(str(f))
        for name in list(sys.modules):
            if name.split(".")[0] in PACKAGES.values():
                del sys.modules[name]
        importlib.invalidate_caches()
        REGISTRY.forget_plugins()
        interp_registry.forget_plugins()


@pytest.fixture
def glu(installed):
    """The example plugin installed: the `gated_linear` kind exists."""
    with on_path(installed["glu"]):
        yield installed["glu"]


@pytest.fixture
def glu_and_broken(installed):
    """The example plugin and the broken one installed together."""
    with on_path(installed["glu"], installed["broken"]):
        yield
