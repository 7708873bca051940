"""Time namespaces (Linux 5.6): a forked child's children see CLOCK_MONOTONIC and
CLOCK_BOOTTIME shifted, so a spec can check that timers armed in the namespace run on its
clocks.

unshare(CLONE_NEWTIME) moves only the caller's future children into the new namespace; its
offsets are written once, to the caller's /proc/self/timens_offsets, before any child is
forked. The caller itself keeps its clocks. Confined: refused in the kit's own process
(only an in_child step, or the forked checker, may do it), and it touches nothing but
the calling process's namespace for children, which dies with it.
"""

from __future__ import annotations

import ctypes
import os

from kit.adapter.libc import Result, call, libc
from kit.registry import constants, operation

CLONE_NEWTIME = 0x80
constants(CLONE_NEWTIME=CLONE_NEWTIME)
# /proc/self/timens_offsets takes a clock by name or by id; the kit writes names
OFFSET_LIMIT = 10 ** 7          # seconds; a few months, well inside the kernel's own bound

libc.unshare.argtypes = [ctypes.c_int]
libc.unshare.restype = ctypes.c_int

_IMPORT_PID = os.getpid()


@operation(family="process", monotonic="int", boottime="int")
def timens_for_children(monotonic: int = 0, boottime: int = 0) -> Result:
    """unshare(2) CLONE_NEWTIME, then set the new namespace's clock offsets (whole seconds)
    for CLOCK_MONOTONIC and CLOCK_BOOTTIME: children forked afterwards (a nested in_child)
    live in it. Refused (EPERM) outside a forked child."""
    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="timens_for_children only runs in a forked child (in_child)")
    for name, seconds in (("monotonic", monotonic), ("boottime", boottime)):
        if abs(seconds) > OFFSET_LIMIT:
            return Result(ret=-1, errno="EINVAL",
                          value=f"{name} offset {seconds} s is beyond the kit's {OFFSET_LIMIT} s")
    res = call(libc.unshare, CLONE_NEWTIME)
    if not res.ok:
        return res
    try:
        with open("/proc/self/timens_offsets", "w") as fh:
            fh.write(f"monotonic {monotonic} 0\nboottime {boottime} 0\n")
    except OSError as exc:
        from kit.adapter.libc import from_oserror

        return from_oserror(exc)
    return Result(ret=0, value=0)
