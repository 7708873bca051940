"""Kernel AIO (io_setup/io_submit/io_getevents) used the way eventfd(2) describes it:
completions that signal an eventfd (IOCB_FLAG_RESFD), the kernel-to-user bridge.

glibc has no wrappers for these calls (libaio has), so they go through syscall(2).
"""

from __future__ import annotations

import ctypes
import os
import time

from kit.adapter import arch
from kit.adapter.libc import Result, call, libc, syscall
from kit.adapter.poll import Timespec
from kit.registry import operation

# include/uapi/linux/aio_abi.h
IOCB_CMD_PREAD = 0
IOCB_FLAG_RESFD = 1 << 0
REAP_BOUND = 5.0


class Iocb(ctypes.Structure):
    # aio_key and aio_rw_flags swap places on big-endian hosts; both are zero here.
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_uint32), ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


def _nr(name: str) -> int | None:
    return arch.syscall_number(name)


@operation(family="aio", blocking=True, resfd="fd", count="int")
def aio_read_notify(resfd: int, count: int = 1) -> Result:
    """Submit `count` 8-byte AIO reads of /dev/zero, each with IOCB_FLAG_RESFD naming the
    eventfd `resfd`, and reap them; every completion makes the kernel signal the eventfd
    (adds 1). value is the number of completions reaped."""
    if _nr("io_setup") is None:
        return Result(ret=-1, errno="ENOSYS")
    start = time.monotonic()
    ctx = ctypes.c_ulong(0)
    res = call(libc.syscall, ctypes.c_long(_nr("io_setup")), ctypes.c_long(max(count, 1)),
               ctypes.byref(ctx))
    if not res.ok:
        return res
    zero = -1
    try:
        zero = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
        res = _submit_and_reap(ctx.value, zero, resfd, count)
    finally:
        syscall(_nr("io_destroy"), ctx.value)
        if zero >= 0:
            os.close(zero)
    res.duration = time.monotonic() - start
    return res


def _submit_and_reap(ctx: int, source: int, resfd: int, count: int) -> Result:
    bufs = [ctypes.create_string_buffer(8) for _ in range(count)]
    iocbs = [Iocb(aio_lio_opcode=IOCB_CMD_PREAD, aio_fildes=source,
                  aio_buf=ctypes.addressof(b), aio_nbytes=8, aio_flags=IOCB_FLAG_RESFD,
                  aio_resfd=resfd) for b in bufs]
    ptrs = (ctypes.POINTER(Iocb) * max(count, 1))(*[ctypes.pointer(i) for i in iocbs])
    res = syscall(_nr("io_submit"), ctx, count, ctypes.addressof(ptrs))
    if not res.ok or res.ret == 0:
        return res
    events = (IoEvent * res.ret)()
    timeout = Timespec.of(REAP_BOUND)
    return syscall(_nr("io_getevents"), ctx, res.ret, res.ret, ctypes.addressof(events),
                   ctypes.addressof(timeout))
