"""pytest configuration of the kit's own tests: pytester, the watchdog, shared fixtures.

The helpers (spec builders, runners) live in helpers.py so test modules can import them.
"""

from __future__ import annotations

import shutil
import threading

import pytest
from helpers import PYCACHE

from kit.adapter import watchdog
from kit.adapter.proc import open_fds
from kit.engine.target import Target

pytest_plugins = ["pytester"]


def pytest_configure(config):
    # The watchdog's handler must be installed from the main thread; kit.plugin (loaded by
    # the repository's conftest) does it too, this makes tests/ independent of that.
    watchdog.install()


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _subprocess_bytecode_cache(monkeypatch):
    """pytester's subprocesses inherit os.environ: give them the shared bytecode cache."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", PYCACHE)


@pytest.fixture
def target() -> Target:
    return Target.current()


@pytest.fixture
def no_leaks():
    """The body must leave no descriptor and no thread behind."""
    fds, threads = open_fds(), set(threading.enumerate())
    yield
    leaked_threads = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert open_fds() - fds == set(), "descriptors left open"
    assert leaked_threads == [], "threads left running"


@pytest.fixture(scope="session")
def cc() -> str:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        pytest.skip("no C compiler (gcc/cc) on PATH: cannot build an LD_PRELOAD shim")
    return compiler
