"""Readiness through poll(2), ppoll(2) and select(2) for one descriptor."""

from __future__ import annotations

import ctypes

from kit.adapter.libc import Result, call, libc
from kit.registry import constants, operation

# include/uapi/asm-generic/poll.h
constants(POLLIN=0x1, POLLPRI=0x2, POLLOUT=0x4, POLLERR=0x8, POLLHUP=0x10, POLLNVAL=0x20,
          POLLRDNORM=0x40, POLLRDBAND=0x80, POLLWRNORM=0x100, POLLWRBAND=0x200,
          POLLRDHUP=0x2000)


class PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    @classmethod
    def of(cls, seconds: float) -> "Timespec":
        whole = int(seconds)
        return cls(whole, int(round((seconds - whole) * 1e9)))


FD_SETSIZE = 1024
_LONG_BITS = ctypes.sizeof(ctypes.c_ulong) * 8
FdSet = ctypes.c_ulong * (FD_SETSIZE // _LONG_BITS)

libc.poll.argtypes = [ctypes.POINTER(PollFd), ctypes.c_ulong, ctypes.c_int]
libc.ppoll.argtypes = [ctypes.POINTER(PollFd), ctypes.c_ulong, ctypes.POINTER(Timespec),
                       ctypes.c_void_p]
libc.select.argtypes = [ctypes.c_int, ctypes.POINTER(FdSet), ctypes.POINTER(FdSet),
                        ctypes.POINTER(FdSet), ctypes.POINTER(Timeval)]


@operation(family="poll", blocking=True, fd="fd", events="flags", timeout="int")
def poll(fd: int, events: int = 0x1 | 0x4, timeout: int = 0) -> Result:
    """poll(2) on one fd, `timeout` in milliseconds; value is revents."""
    pfd = PollFd(fd, events, 0)
    res = call(libc.poll, ctypes.byref(pfd), 1, timeout)
    if res.ok:
        res.value = pfd.revents & 0xFFFF
    return res


@operation(family="poll", blocking=True, fd="fd", events="flags", timeout="seconds")
def ppoll(fd: int, events: int = 0x1 | 0x4, timeout: float = 0.0) -> Result:
    """ppoll(2) on one fd with a timespec timeout (negative: infinite); value is revents."""
    pfd = PollFd(fd, events, 0)
    ts = None if timeout < 0 else ctypes.byref(Timespec.of(timeout))
    res = call(libc.ppoll, ctypes.byref(pfd), 1, ts, None)
    if res.ok:
        res.value = pfd.revents & 0xFFFF
    return res


def _isset(fdset, fd: int) -> bool:
    return bool(fdset[fd // _LONG_BITS] & (1 << (fd % _LONG_BITS)))


SELECT_SETS = ("readable", "writable", "exceptional")


@operation(family="poll", blocking=True, fd="fd", timeout="seconds", sets="str")
def select(fd: int, timeout: float = 0.0, sets: str = "readable,writable,exceptional") -> Result:
    """select(2) on one fd in the named sets (default all three; e.g. sets: readable to
    wait for data only); value is {readable, writable, exceptional}."""
    if not 0 <= fd < FD_SETSIZE:
        return Result(ret=-1, errno="EBADF")  # fd_set cannot express it
    wanted = {name.strip() for name in sets.split(",") if name.strip()}
    if wanted - set(SELECT_SETS):
        raise ValueError(f"select: unknown set(s) {sorted(wanted - set(SELECT_SETS))}; "
                         f"use {', '.join(SELECT_SETS)}")
    sets = [FdSet(), FdSet(), FdSet()]
    for name, fdset in zip(SELECT_SETS, sets):
        if name in wanted:
            fdset[fd // _LONG_BITS] |= 1 << (fd % _LONG_BITS)
    tv = None
    if timeout >= 0:
        whole = int(timeout)
        tv = ctypes.byref(Timeval(whole, int((timeout - whole) * 1e6)))
    res = call(libc.select, fd + 1, *[ctypes.byref(s) for s in sets], tv)
    if res.ok:
        res.value = {name: _isset(s, fd) for name, s in zip(SELECT_SETS, sets)}
    return res
