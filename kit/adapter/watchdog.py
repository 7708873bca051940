"""Bounds for calls that may block.

A blocking syscall is interrupted by a signal sent to the very thread that made it:
the kit's handler is installed without SA_RESTART (Python's default), so the call
returns EINTR and the run goes on with a timeout verdict instead of hanging.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

WATCHDOG_SIGNAL = signal.SIGRTMAX - 1
_REFIRE = 0.05  # a signal that lands just before the syscall starts is re-sent


class TargetTimeout(BaseException):
    """A call on the target did not return within its bound.

    A BaseException on purpose: Hypothesis shrinks on Exception, and shrinking a
    hang would replay it dozens of times.
    """


def _interrupt(signum, frame):  # noqa: ARG001 - the interruption is the point
    pass


def install() -> None:
    """Install the handler; must run in the main thread (signal module rule)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(WATCHDOG_SIGNAL, _interrupt)


def installed() -> bool:
    return signal.getsignal(WATCHDOG_SIGNAL) is _interrupt


class _Guard:
    def __init__(self, bound: float, ident: int):
        self.bound = bound
        self.ident = ident
        self.fired = False
        self._done = threading.Event()

    def _run(self) -> None:
        if self._done.wait(self.bound):
            return
        self.fired = True
        while not self._done.is_set():
            try:
                signal.pthread_kill(self.ident, WATCHDOG_SIGNAL)
            except (ProcessLookupError, OSError):
                return
            self._done.wait(_REFIRE)


@contextmanager
def bounded(bound: float):
    """Run the body with a watchdog: after `bound` seconds the thread is interrupted."""
    guard = _Guard(bound, threading.get_ident())
    if not installed():
        # Without our handler the signal would kill the process; run unguarded
        # (pytest-timeout remains the outer bound).
        yield guard
        return
    timer = threading.Thread(target=guard._run, name="kit-watchdog", daemon=True)
    timer.start()
    try:
        yield guard
    finally:
        guard._done.set()
        timer.join()
