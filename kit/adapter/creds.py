"""Credentials for experiments that need a capability absent: capset(2) on the calling
thread, only in a forked child (an `in_child` step), so the run itself keeps its
privileges whatever the spec does."""

from __future__ import annotations

import ctypes
import os

from kit.adapter.libc import Result, call, libc
from kit.registry import operation

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_IMPORT_PID = os.getpid()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


libc.capget.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


@operation(family="process", cap="str")
def capability_drop(cap: str) -> Result:
    """Remove capability `cap` (e.g. CAP_BLOCK_SUSPEND) from the calling thread's
    effective, permitted and inheritable sets with capset(2). Refused (EPERM) outside a
    forked child: use it in an in_child step, whose changes die with the child."""
    from kit.engine.target import CAPABILITIES  # the kit's capability table

    if cap not in CAPABILITIES:
        return Result(ret=-1, errno="EINVAL", value=f"unknown capability {cap}")
    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="capability_drop only runs in a forked child (in_child)")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    res = call(libc.capget, ctypes.byref(header), data)
    if not res.ok:
        return res
    bit = CAPABILITIES[cap]
    word, mask = bit // 32, ~(1 << (bit % 32)) & 0xFFFFFFFF
    data[word].effective &= mask
    data[word].permitted &= mask
    data[word].inheritable &= mask
    res = call(libc.capset, ctypes.byref(header), data)
    if res.ok:
        res.value = True
    return res


@operation(family="process", cap="str")
def capability_effective(cap: str) -> Result:
    """Whether the calling thread has `cap` in its effective set (capget(2))."""
    from kit.engine.target import CAPABILITIES

    if cap not in CAPABILITIES:
        return Result(ret=-1, errno="EINVAL", value=f"unknown capability {cap}")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    res = call(libc.capget, ctypes.byref(header), data)
    if res.ok:
        bit = CAPABILITIES[cap]
        res.value = bool(data[bit // 32].effective >> (bit % 32) & 1)
    return res


@operation(family="process")
def fd_limit_reach() -> Result:
    """Lower the soft RLIMIT_NOFILE to the lowest free descriptor number, so the next
    call that creates a descriptor fails with EMFILE. Refused (EPERM) outside a forked
    child: use it in an in_child step. Value is the new soft limit."""
    import resource

    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="fd_limit_reach only runs in a forked child (in_child)")
    try:
        lowest = os.dup(0) if _is_open(0) else 0
        if lowest:
            os.close(lowest)
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    except (OSError, ValueError) as exc:
        return Result(ret=-1, errno="EINVAL", value=str(exc))
    return Result(ret=0, value=lowest)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
