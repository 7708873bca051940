"""The processes a matrix run starts (VMs, runsc, userland chroots, the host's `kit run`,
userland builds), so that none outlives the run.

Each starts in a session of its own, so that a timeout or a stop reaches everything it
started in turn (qemu's threads, runsc's sandbox, a chroot's xdist workers). A stopped run
(Ctrl-C, SIGTERM, SIGHUP) calls stop_all(): every live group gets SIGTERM (a `kit run`
writes its partial report, qemu and runsc shut down), then SIGKILL after a grace; and no
target starts a process after that. Without it a `kit matrix` killed by its CI job's
timeout left its VMs running for the rest of their hour.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

GRACE = 5.0   # seconds between SIGTERM and SIGKILL

_lock = threading.Lock()
_live: set[subprocess.Popen] = set()
_stopping = threading.Event()


class Stopped(Exception):
    """The run is being stopped: no new process may start."""


def start(cmd: list[str], **popen) -> subprocess.Popen:
    """subprocess.Popen in a session of its own, known until forget()."""
    with _lock:
        if _stopping.is_set():
            raise Stopped(f"not started, the run is stopping: {cmd[0]}")
        proc = subprocess.Popen(cmd, start_new_session=True, **popen)
        _live.add(proc)
    return proc


def forget(proc: subprocess.Popen) -> None:
    with _lock:
        _live.discard(proc)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: list[str], *, timeout: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run, except that a timeout (or any other way out) kills the process's
    whole group, not only the process."""
    proc = start(cmd, **popen)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    finally:
        forget(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_all() -> None:
    """SIGTERM to every live group, SIGKILL to what is left after GRACE; nothing starts
    after this."""
    with _lock:
        _stopping.set()
        live = list(_live)
    for proc in live:
        kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    for proc in live:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        kill_group(proc)   # the group: the leader may be gone while its children stay


class Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: stop as Ctrl-C would."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stopped_by(exc: BaseException) -> str:
    """How a stop is named to the user: Ctrl-C, SIGTERM, SIGHUP."""
    return "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)


@contextmanager
def stop_on_signals():
    """In the main thread: SIGTERM and SIGHUP raise Signalled there, like Ctrl-C raises
    KeyboardInterrupt, so the run can stop its processes and say what finished."""
    def handler(signum, _frame):
        raise Signalled(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
