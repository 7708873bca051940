"""Readiness through pselect(2) for one descriptor (select(2) itself is in kit.adapter.poll)."""

from __future__ import annotations

import ctypes

from kit.adapter.libc import Result, call, libc
from kit.adapter.poll import _LONG_BITS, FD_SETSIZE, FdSet, Timespec, _isset
from kit.registry import operation

libc.pselect.argtypes = [ctypes.c_int, ctypes.POINTER(FdSet), ctypes.POINTER(FdSet),
                         ctypes.POINTER(FdSet), ctypes.POINTER(Timespec), ctypes.c_void_p]


@operation(family="poll", blocking=True, fd="fd", timeout="seconds")
def pselect(fd: int, timeout: float = 0.0) -> Result:
    """pselect(2) on one fd in all three sets, no signal mask (negative timeout: infinite);
    value is {readable, writable, exceptional}."""
    if not 0 <= fd < FD_SETSIZE:
        return Result(ret=-1, errno="EBADF")  # fd_set cannot express it
    sets = [FdSet(), FdSet(), FdSet()]
    for fdset in sets:
        fdset[fd // _LONG_BITS] |= 1 << (fd % _LONG_BITS)
    ts = None if timeout < 0 else ctypes.byref(Timespec.of(timeout))
    res = call(libc.pselect, fd + 1, *[ctypes.byref(s) for s in sets], ts, None)
    if res.ok:
        res.value = {name: _isset(s, fd)
                     for name, s in zip(("readable", "writable", "exceptional"), sets)}
    return res
