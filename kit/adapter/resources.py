"""Resource limits: lowering RLIMIT_NOFILE so that EMFILE can be provoked.

Meant for `in_child` steps only: a limit set in the runner's own process would
outlive the behaviour and starve every later one of descriptors.
"""

from __future__ import annotations

import ctypes
import resource

from kit.adapter.libc import Result, call, libc
from kit.registry import operation


class Rlimit(ctypes.Structure):
    _fields_ = [("rlim_cur", ctypes.c_ulong), ("rlim_max", ctypes.c_ulong)]


libc.getrlimit.argtypes = [ctypes.c_int, ctypes.POINTER(Rlimit)]
libc.setrlimit.argtypes = [ctypes.c_int, ctypes.POINTER(Rlimit)]


@operation(family="resources", soft="int")
def setrlimit_nofile(soft: int) -> Result:
    """setrlimit(2) RLIMIT_NOFILE: set the soft limit, keep the hard one; value is the old soft
    limit. Use it only inside `in_child`."""
    limits = Rlimit()
    res = call(libc.getrlimit, resource.RLIMIT_NOFILE, ctypes.byref(limits))
    if not res.ok:
        return res
    old = limits.rlim_cur
    limits.rlim_cur = soft
    return call(libc.setrlimit, resource.RLIMIT_NOFILE, ctypes.byref(limits), value=old)
