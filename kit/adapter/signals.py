"""Signals for EINTR and signal-mask experiments (epoll_wait(2) EINTR, epoll_pwait(2)).

The handler is Python's: signal.signal installs its C-level handler without SA_RESTART,
so a blocking call interrupted by the signal fails with EINTR. Python allows that only
from the main thread, which is where the interpreter runs a behaviour's main steps (and,
after fork, the child's only thread is its main thread).

Every change here is process state that must not outlive a behaviour. Either pair the
operations in the spec (signal_install ... signal_restore, signal_block ... signal_unblock)
or, better, run the whole experiment in an `in_child` step, where the changes die with
the child whatever happens. The kit's watchdog signal (SIGRTMAX-1) is refused everywhere.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import threading

from kit.adapter.libc import Result, from_oserror, libc
from kit.adapter.watchdog import WATCHDOG_SIGNAL, WATCHDOG_SIGNAL_NAME
from kit.registry import constants, operation

# Signal numbers by name (SIGUSR1, SIGUSR2, ..., SIGRTMIN, SIGRTMAX) for `signum` arguments.
constants(**{s.name: int(s) for s in signal.Signals})


class SigSet(ctypes.Structure):
    """glibc's sigset_t: 1024 bits."""

    _fields_ = [("val", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong))))]


libc.sigemptyset.argtypes = [ctypes.c_void_p]
libc.sigaddset.argtypes = [ctypes.c_void_p, ctypes.c_int]

_SPLIT = re.compile(r"[\s,|]+")


def parse_signals(spec: str | int) -> tuple[list[int], str | None]:
    """'SIGUSR1, USR2 | 10' -> [10, 12, 10]; returns (numbers, first unknown word).
    A number (e.g. a $reference to a drawn signal) is that one signal."""
    if isinstance(spec, int):
        return [spec], None
    out = []
    for word in filter(None, _SPLIT.split(str(spec).strip())):
        if word.lstrip("-").isdigit():
            out.append(int(word))
            continue
        name = word.upper() if word.upper().startswith("SIG") else "SIG" + word.upper()
        try:
            out.append(int(signal.Signals[name]))
        except KeyError:
            return out, word
    return out, None


def _refuse(signum: int) -> Result | None:
    if signum == WATCHDOG_SIGNAL:
        return Result(ret=-1, errno="EINVAL",
                      value=f"{WATCHDOG_SIGNAL_NAME} is the kit's watchdog signal")
    if not 1 <= signum < signal.NSIG:
        return Result(ret=-1, errno="EINVAL", value=f"no signal {signum}")
    return None


# Signals whose default action is to do nothing; every other one kills or stops the run.
_HARMLESS_BY_DEFAULT = {signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT}


def _refuse_send(signum: int) -> Result | None:
    refused = _refuse(signum)
    if refused:
        return refused
    if signal.getsignal(signum) in (signal.SIG_DFL, None) and \
            signum not in _HARMLESS_BY_DEFAULT:
        return Result(ret=-1, errno="EINVAL",
                      value=f"{_name(signum)} has its default action here, which would end "
                            f"the run: signal_install it first")
    return None


# -- handlers ----------------------------------------------------------------------------

_saved: dict[int, object] = {}     # signal -> disposition before the first install
_caught: dict[int, int] = {}       # signal -> times the no-op handler ran


def _noop(signum, frame):  # noqa: ARG001 - catching the signal is the whole point
    _caught[signum] = _caught.get(signum, 0) + 1


def _disposition(handler) -> str:
    if handler is signal.SIG_DFL:
        return "SIG_DFL"
    if handler is signal.SIG_IGN:
        return "SIG_IGN"
    if handler is _noop:
        return "kit"
    return "handler" if handler is not None else "unknown"


@operation(family="signal", signum="int", restart="bool")
def signal_install(signum: int, restart: bool = False) -> Result:
    """Install a no-op handler for `signum` without SA_RESTART, or with it for `restart:
    true` (main thread only, so in a behaviour's main steps or in an in_child step). Pair
    it with signal_restore. Value is the disposition it replaced (SIG_DFL, SIG_IGN,
    handler, or kit if already ours)."""
    refused = _refuse(signum)
    if refused:
        return refused
    if threading.current_thread() is not threading.main_thread():
        return Result(ret=-1, errno="ENOTSUP",
                      value="Python installs signal handlers only from the main thread")
    try:
        previous = signal.signal(signum, _noop)
        # siginterrupt(False) sets SA_RESTART on the handler just installed; restoring
        # through signal.signal clears it again
        signal.siginterrupt(signum, not restart)
    except (OSError, ValueError) as exc:
        return Result(ret=-1, errno="EINVAL", value=str(exc))
    _saved.setdefault(signum, previous)
    _caught[signum] = 0
    return Result(ret=0, value=_disposition(previous))


@operation(family="signal", signum="int")
def signal_restore(signum: int) -> Result:
    """Put back the disposition signal_install replaced (main thread only). Value is true
    if there was one to restore."""
    refused = _refuse(signum)
    if refused:
        return refused
    if signum not in _saved:
        return Result(ret=0, value=False)
    if threading.current_thread() is not threading.main_thread():
        return Result(ret=-1, errno="ENOTSUP",
                      value="Python changes signal handlers only from the main thread")
    signal.signal(signum, _saved.pop(signum))
    return Result(ret=0, value=True)


@operation(family="signal", signum="int")
def signal_caught(signum: int) -> Result:
    """How many times the handler of signal_install ran for `signum` since it was installed
    (Python runs it in the main thread, before the main thread's next step)."""
    return Result(ret=0, value=_caught.get(signum, 0))


# -- sending -----------------------------------------------------------------------------

@operation(family="signal", signum="int", to="str")
def signal_thread(signum: int, to: str = "main") -> Result:
    """pthread_kill(3): send `signum` to one thread, `to: main` (the thread that runs a
    behaviour's main steps; in a child, its only thread) or `to: self`. Refused for a
    signal whose default action would end the run (install a handler first)."""
    refused = _refuse_send(signum)
    if refused:
        return refused
    if to not in ("main", "self"):
        return Result(ret=-1, errno="EINVAL", value="`to` is main or self")
    ident = threading.main_thread().ident if to == "main" else threading.get_ident()
    try:
        signal.pthread_kill(ident, signum)
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=0)


@operation(family="signal", signum="int")
def signal_process(signum: int) -> Result:
    """kill(2) of the kit's own process: the kernel picks any thread not blocking it.
    Refused for a signal whose default action would end the run."""
    refused = _refuse_send(signum)
    if refused:
        return refused
    try:
        os.kill(os.getpid(), signum)
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=0)


# -- the calling thread's mask -------------------------------------------------------------

def _mask_change(how: int, spec: str) -> Result:
    numbers, bad = parse_signals(spec)
    if bad:
        return Result(ret=-1, errno="EINVAL", value=f"unknown signal {bad!r}")
    for number in numbers:
        refused = _refuse(number)
        if refused:
            return refused
    try:
        before = signal.pthread_sigmask(how, numbers)
    except (OSError, ValueError) as exc:
        return Result(ret=-1, errno="EINVAL", value=str(exc))
    return Result(ret=0, value=",".join(_name(s) for s in sorted(before)))


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(int(signum))


@operation(family="signal", signals="str")
def signal_block(signals: str) -> Result:
    """pthread_sigmask(SIG_BLOCK) in the calling thread ("SIGUSR1,SIGUSR2"); pair it with
    signal_unblock. Value is the mask before, as names."""
    return _mask_change(signal.SIG_BLOCK, signals)


@operation(family="signal", signals="str")
def signal_unblock(signals: str) -> Result:
    """pthread_sigmask(SIG_UNBLOCK) in the calling thread. Value is the mask before."""
    return _mask_change(signal.SIG_UNBLOCK, signals)


@operation(family="signal", signum="int")
def signal_pending(signum: int) -> Result:
    """sigpending(2): whether `signum` is pending for the calling thread or the process."""
    return Result(ret=0, value=signum in signal.sigpending())
