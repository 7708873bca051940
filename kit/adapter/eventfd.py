"""eventfd(2): the glibc wrapper, both raw syscalls, and glibc's eventfd_read/eventfd_write."""

from __future__ import annotations

import ctypes

from kit.adapter import arch
from kit.adapter.libc import Result, call, libc, syscall
from kit.registry import constants, operation

# include/uapi/linux/eventfd.h: the non-semaphore flags alias the O_* values.
constants(EFD_SEMAPHORE=1, EFD_CLOEXEC=0o2000000, EFD_NONBLOCK=0o4000)

libc.eventfd.argtypes = [ctypes.c_uint, ctypes.c_int]
libc.eventfd_read.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]
libc.eventfd_write.argtypes = [ctypes.c_int, ctypes.c_uint64]


def _created(res: Result) -> Result:
    if res.ok:
        res.created_fds.append(res.ret)
    return res


@operation(family="eventfd", initval="int", flags="flags")
def eventfd(initval: int = 0, flags: int = 0) -> Result:
    """eventfd(3) through the C library (glibc uses eventfd2); value is the new fd."""
    return _created(call(libc.eventfd, initval & 0xFFFFFFFF, flags))


@operation(family="eventfd", initval="int", flags="flags")
def eventfd2_syscall(initval: int = 0, flags: int = 0) -> Result:
    """The raw eventfd2 system call; value is the new fd."""
    return _created(syscall(arch.syscall_number("eventfd2"), initval & 0xFFFFFFFF, flags))


@operation(family="eventfd", initval="int")
def eventfd_syscall(initval: int = 0) -> Result:
    """The legacy flag-less eventfd system call (absent on aarch64); value is the new fd."""
    number = arch.syscall_number("eventfd")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    return _created(syscall(number, initval & 0xFFFFFFFF))


@operation(family="eventfd", blocking=True, fd="fd")
def glibc_eventfd_read(fd: int) -> Result:
    """The C library's eventfd_read(3): 0 on success; value is the counter read."""
    out = ctypes.c_uint64(0)
    res = call(libc.eventfd_read, fd, ctypes.byref(out))
    if res.ok:
        res.value = out.value
    return res


@operation(family="eventfd", blocking=True, fd="fd", value="int")
def glibc_eventfd_write(fd: int, value: int) -> Result:
    """The C library's eventfd_write(3): 0 on success."""
    return call(libc.eventfd_write, fd, value & 0xFFFFFFFFFFFFFFFF)
