"""The one place where the kit touches libc.

Symbols are looked up with dlopen(NULL): the process's global scope. An LD_PRELOAD
interposer (a fault injector, or a user-space emulation such as an epoll shim) is
therefore what the kit calls when one is loaded, exactly as a C program would; that
includes syscall(2), through which the operations named *_syscall go. The kit's own
machinery (the watchdog's timers, the checker's death signal) uses own_libc() instead,
which a preloaded library cannot intercept.

Every call returns a Result: the raw return value and the errno *name*, captured
immediately after the call so nothing in between can clobber it.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)

# syscall(2) is variadic; every argument the kit passes fits in a long.
libc.syscall.restype = ctypes.c_long


@cache
def own_libc() -> ctypes.CDLL:
    """The C library's own handle, for calls a library under test must not see: dlsym on
    it searches the C library alone, never an LD_PRELOAD'd library. Falls back to the
    global scope where the C library's name is not a known one."""
    for name in ("libc.so.6", f"libc.musl-{platform.machine()}.so.1"):
        try:
            # RTLD_NOLOAD: the copy already loaded, never a second C library.
            own = ctypes.CDLL(name, mode=os.RTLD_NOLOAD, use_errno=True)
        except OSError:
            continue
        own.syscall.restype = ctypes.c_long
        return own
    return libc


@dataclass
class Result:
    """Outcome of one adapter call: never an exception, always the errno."""

    ret: int
    errno: str | None = None
    value: Any = None
    duration: float = 0.0
    # Seconds of `duration` the thread spent runnable but waiting for a CPU, where measured
    # (kit.adapter.proc.run_queue_wait): the machine's load, not the call blocking.
    queued: float = 0.0
    # Whether another thread of the run saw this call asleep in the kernel (/proc) while
    # it ran: the evidence `blocks: {asleep: true}` wants. False: nobody saw it there;
    # None: one looked, but /proc could not tell (a sandbox without the per-task files).
    seen_asleep: bool | None = False
    # Descriptors this call created, so the run can close what a spec forgets to.
    created_fds: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errno is None

    def as_dict(self) -> dict:
        out = {"ret": self.ret, "errno": self.errno, "value": self.value,
               "duration": round(self.duration, 6)}
        if self.queued:
            out["queued"] = round(self.queued, 6)
        if self.seen_asleep:
            out["seen_asleep"] = True
        return out


def errno_name(code: int) -> str:
    return _errno.errorcode.get(code, f"E{code}")


def from_oserror(exc: OSError) -> Result:
    """A failed call made through Python's os or socket module, as a Result."""
    return Result(ret=-1, errno=_errno.errorcode.get(exc.errno or 0, "EIO"))


# Bound once: call() runs for every operation a spec makes.
_set_errno, _get_errno, _monotonic = ctypes.set_errno, ctypes.get_errno, time.monotonic


def call(fn, *args, value=None) -> Result:
    """Call a libc function; -1 means failure and errno is read right away."""
    _set_errno(0)
    start = _monotonic()
    ret = fn(*args)
    err = _get_errno()
    duration = _monotonic() - start
    if ret == -1:
        return Result(ret=-1, errno=errno_name(err), duration=duration)
    return Result(ret=ret, value=ret if value is None else value, duration=duration)


def syscall(number: int, *args) -> Result:
    """The raw syscall(2) path, bypassing any libc wrapper logic."""
    return call(libc.syscall, ctypes.c_long(number), *[ctypes.c_long(a) for a in args])


_readonly_page = None
_inaccessible_page = None


def _map_page(prot: int) -> int:
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    map_private_anonymous = 0x02 | 0x20
    addr = libc.mmap(None, 4096, prot, map_private_anonymous, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError("mmap of a page failed")
    return addr


def inaccessible_page() -> int:
    """The address of one page mapped PROT_NONE: the kernel can neither read nor write it
    (EFAULT for an argument it reads). Mapped once and kept for the life of the process."""
    global _inaccessible_page
    if _inaccessible_page is None:
        _inaccessible_page = _map_page(0)
    return _inaccessible_page


def readonly_page() -> int:
    """The address of one page mapped PROT_READ: valid, but the kernel cannot write to it
    (an EFAULT experiment). Mapped once and kept for the life of the process."""
    global _readonly_page
    if _readonly_page is None:
        _readonly_page = _map_page(0x1)  # PROT_READ
    return _readonly_page
