"""Bounds for calls that may block.

A blocking syscall is interrupted by a signal sent to the very thread that made it:
the kit's handler is installed without SA_RESTART (Python's default), so the call
returns EINTR and the run goes on with a timeout verdict instead of hanging.

The signal comes from a POSIX timer aimed at the calling thread (timer_create with
SIGEV_THREAD_ID, armed for the bound, then re-firing every _REFIRE seconds): three
system calls per guarded call, no thread. The timer syscalls are made raw, through the
C library's own syscall(2) (kit.adapter.libc.own_libc), so an LD_PRELOAD library under
test cannot disturb the watchdog, even one that interposes syscall(). Where such timers are not
available (no syscall number for this architecture, a sandbox refusing them), a helper
thread sends the signal with pthread_kill instead.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import threading
import time
from contextlib import contextmanager


def _deliverable(signum: int) -> bool:
    """Whether this process can send itself `signum` (sent blocked, then taken back).
    Natively every signal can. qemu-user 7.2 maps the target's realtime signals onto the
    host's from SIGRTMIN+2 up, two being its own (linux-user/signal.c, signal_table_init),
    so the target's top two have no host signal and sending them fails with EINVAL."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signum])
    try:
        signal.pthread_kill(threading.get_ident(), signum)
        signal.sigtimedwait([signum], 0)
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return True


def top_signal(deliverable=_deliverable) -> int:
    """The highest realtime signal this process can send: SIGRTMAX natively, lower under
    an emulator (SIGRTMAX-2 under qemu-user 7.2)."""
    return next((s for s in range(signal.SIGRTMAX, signal.SIGRTMIN + 8, -1)
                 if deliverable(s)), signal.SIGRTMAX)


# The kit's own signals sit just below the top one, which is left to specs.
TOP_SIGNAL = top_signal()
WATCHDOG_SIGNAL = TOP_SIGNAL - 1
# how messages name it: SIGRTMAX-1 natively
WATCHDOG_SIGNAL_NAME = f"SIGRTMAX-{signal.SIGRTMAX - WATCHDOG_SIGNAL}"
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


# -- a POSIX timer per guarded call ------------------------------------------------------

_CLOCK_MONOTONIC = 1   # include/uapi/linux/time.h
_SIGEV_THREAD_ID = 4   # include/uapi/asm-generic/siginfo.h
# timer_create, timer_settime and timer_delete come from kit.adapter.arch's tables
_TIMER_SYSCALLS = ("timer_create", "timer_settime", "timer_delete")


class _SigEvent(ctypes.Structure):
    """struct sigevent (64 bytes): sigev_notify_thread_id is the first int of the union."""

    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("tid", ctypes.c_int),
                ("_pad", ctypes.c_int * ((64 - ctypes.sizeof(ctypes.c_void_p) - 12) // 4))]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


def _timespec(seconds: float) -> _Timespec:
    whole = int(seconds)
    return _Timespec(whole, min(int((seconds - whole) * 1e9), 999_999_999))


class _Timers:
    """Raw timer syscalls through the C library's own syscall(2), out of an interposer's reach."""

    def __init__(self):
        from kit.adapter.arch import syscall_number

        numbers = tuple(syscall_number(name) for name in _TIMER_SYSCALLS)
        self.numbers = None if None in numbers else numbers
        self.usable = self.numbers is not None
        if self.usable:
            from kit.adapter.libc import own_libc

            self.syscall = own_libc().syscall
            self.refire = _timespec(_REFIRE)

    def arm(self, tid: int, bound: float) -> ctypes.c_int | None:
        """A timer that signals thread `tid` after `bound` s, then every _REFIRE s."""
        create, settime, _ = self.numbers
        event = _SigEvent(signo=WATCHDOG_SIGNAL, notify=_SIGEV_THREAD_ID, tid=tid)
        timer = ctypes.c_int(0)
        if self.syscall(ctypes.c_long(create), ctypes.c_long(_CLOCK_MONOTONIC),
                        ctypes.byref(event), ctypes.byref(timer)) != 0:
            if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM, errno.EINVAL,
                                      errno.EOPNOTSUPP):
                self.usable = False  # never available here: the thread fallback from now on
            return None
        spec = _ITimerSpec(self.refire, _timespec(max(bound, 1e-9)))
        if self.syscall(ctypes.c_long(settime), ctypes.c_long(timer.value), ctypes.c_long(0),
                        ctypes.byref(spec), None) != 0:
            self.disarm(timer)
            return None
        return timer

    def disarm(self, timer: ctypes.c_int) -> None:
        self.syscall(ctypes.c_long(self.numbers[2]), ctypes.c_long(timer.value))


_timers = _Timers()


class _Fired:
    """What the body of `bounded` may ask: the bound, and whether the watchdog fired."""

    def __init__(self, bound: float):
        self.bound = bound
        self.fired = False


class _Guard(_Fired):
    """The fallback: a helper thread that signals the guarded thread with pthread_kill."""

    def __init__(self, bound: float, ident: int):
        super().__init__(bound)
        self.ident = ident
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
    if not installed():
        # Without our handler the signal would kill the process; run unguarded
        # (pytest-timeout remains the outer bound).
        yield _Fired(bound)
        return
    if _timers.usable:
        deadline = time.monotonic() + bound
        timer = _timers.arm(threading.get_native_id(), bound)
        if timer is not None:
            fired = _Fired(bound)
            try:
                yield fired
            finally:
                _timers.disarm(timer)
                # The timer runs on CLOCK_MONOTONIC, as time.monotonic does, and was armed
                # after `deadline` was taken: if it has fired, the deadline has passed.
                fired.fired = time.monotonic() >= deadline
            return
    guard = _Guard(bound, threading.get_ident())
    timer_thread = threading.Thread(target=guard._run, name="kit-watchdog", daemon=True)
    timer_thread.start()
    try:
        yield guard
    finally:
        guard._done.set()
        timer_thread.join()
