"""A synchronously generated signal: a forked process touches a page it may not read, and
the kernel sends it SIGSEGV for the fault (signalfd(2) NOTES: such signals are not for
signalfd). The process that faults is a fork of the caller, with its signal mask, handlers
and descriptors, so the caller sets the stage (block SIGSEGV, open a signalfd for it); the
value says how that process ended. Its core dump is turned off first.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import resource
import signal
import time

from kit.adapter.libc import Result, inaccessible_page
from kit.adapter.process import collect_child
from kit.adapter.signalfd import names
from kit.registry import operation


def _blocked_now() -> str:
    """The calling thread's signal mask (sigprocmask(2)), by name."""
    return names(sum(1 << (int(s) - 1) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))


def _fault(report: int, page: int) -> None:
    """The forked process: say what is blocked, then read the inaccessible page."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # pytest's or the kit's faulthandler would print a traceback: a debugging aid of
        # the kit, not a handler the spec installed (with SIGSEGV blocked the kernel
        # resets the handler to SIG_DFL whatever it was)
        faulthandler.disable()
        os.write(report, _blocked_now().encode() + b"\n")
        ctypes.string_at(page, 1)            # the fault: SIGSEGV, synchronously
        os.write(report, b"survived\n")       # only if the kernel let it go on
    finally:
        os._exit(0)


@operation(family="process", blocking=True)
def fault_child() -> Result:
    """fork(2) a process that reads a PROT_NONE page (a real SIGSEGV from a memory fault).
    Value: {blocked (its signal mask just before the fault, by name), killed_by (the signal
    that ended it, or null), survived (it went on after the fault)}."""
    page = inaccessible_page()               # mapped here, before the fork
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _fault(write_end, page)
    os.close(write_end)
    start = time.monotonic()
    try:
        # a fault that neither kills nor lets the process go on faults forever: a timeout
        output, status = collect_child(pid, read_end, "the faulting process")
    finally:
        os.close(read_end)
    lines = output.decode().splitlines()
    killed = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None
    value = {"blocked": lines[0] if lines else None, "killed_by": killed,
             "survived": "survived" in lines}
    return Result(ret=0, value=value, duration=time.monotonic() - start)
