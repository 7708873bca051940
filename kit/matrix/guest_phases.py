"""A pytest plugin for the guest's `kit run`: marks on the VM's console where its phases end.

The qemu target loads it through PYTEST_PLUGINS and names the console in KIT_GUEST_CONSOLE;
anywhere else it does nothing. Each mark is one line, `KIT-INIT: <phase> <uptime>`, with the
guest's /proc/uptime, like the marks /init prints, so the host can split the run's time
(phases.py). Only the controlling process marks (not xdist's workers), and the console is
opened for each line and closed again: no descriptor stays open while specs run.
"""

from __future__ import annotations

import os

import pytest

MARK = "KIT-INIT:"
CONSOLE_ENV = "KIT_GUEST_CONSOLE"


def _uptime() -> str:
    try:
        with open("/proc/uptime") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return "?"


def mark(config, phase: str, *extra) -> None:
    console = os.environ.get(CONSOLE_ENV)
    if not console or hasattr(config, "workerinput"):
        return
    line = " ".join([MARK, phase, _uptime(), *map(str, extra)]) + "\n"
    try:
        fd = os.open(console, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # Python, pytest, Hypothesis and the kit are imported and configured
    mark(config, "imported")
    config.stash[_collected] = False


_collected = pytest.StashKey[bool]()


def _collected_once(config, count: int) -> None:
    if not config.stash.get(_collected, True):
        config.stash[_collected] = True
        mark(config, "collected", count)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    # without xdist: this process collected the specs
    if not session.config.pluginmanager.has_plugin("dsession"):
        _collected_once(session.config, len(session.items))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    # with xdist: the first worker is up (its own imports) and has collected
    _collected_once(node.config, len(ids))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # before the kit's own sessionfinish writes the report
    mark(session.config, "tested")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    mark(config, "reported")
