"""Machine-wide state that behaviours must not share at the same time.

A few behaviours change or depend on something every process on the machine sees: setting
the realtime clock cancels *every* cancel-on-set timer (timerfd_create(2)), so two such
behaviours on two pytest-xdist workers would spoil each other (a read fails with ECANCELED
before it blocks). A behaviour names the state in `exclusive: [realtime_clock]`; the
checker takes an flock(2) on a lock file per name for the whole behaviour, so behaviours
naming the same state run one at a time, whichever worker or run they belong to. The lock
dies with the process that holds it, so a checker killed at its limit cannot leave it held.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import ExitStack, contextmanager

WAIT = 30.0          # seconds: holders are single behaviours of a second or so
POLL = 0.01


class Busy(Exception):
    """The lock stayed taken for WAIT seconds."""


def lock_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "kit-locks")
    try:
        os.mkdir(path)
        os.chmod(path, 0o1777)     # a run as root and one as nobody share the locks
    except FileExistsError:
        pass
    return path


@contextmanager
def _one(name: str, wait: float):
    path = os.path.join(lock_dir(), name)
    # Read-only is enough for flock, and works on a lock file another user made (the
    # umask may have taken 0o666 down to 0o644).
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{name}: {path} stayed locked for {wait:g} s (another "
                               f"behaviour or run that changes it is still going)") from None
                time.sleep(POLL)
        yield
    finally:
        os.close(fd)        # releases the lock


@contextmanager
def held(names, wait: float | None = None):
    """Hold every named lock (in sorted order, so two holders never deadlock), waiting
    up to `wait` seconds (default WAIT) for each."""
    with ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(_one(name, WAIT if wait is None else wait))
        yield
