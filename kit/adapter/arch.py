"""Architecture facts chosen at run time: syscall numbers and struct layouts.

Tables come from the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl and
syscall_32.tbl, arch/s390/kernel/syscalls/syscall.tbl, and the generic
include/uapi/asm-generic/unistd.h used by aarch64). A syscall that an architecture never had
(aarch64 has no epoll_create, epoll_wait, eventfd, signalfd, poll or select) is simply absent,
and specs that need it are "not applicable" there, with that reason; the operations that go
through the C library (epoll_create, epoll_wait, poll, ...) still run, since glibc builds
them on the calls the architecture has.

The ABI is the running interpreter's, not the kernel's: a 32-bit Python on an x86_64 kernel
(an i386 userland) makes the kernel's 32-bit compat calls, so it is "i386" even where
uname says x86_64 (without `setarch i686`). Under qemu-user, uname's machine is the emulated
one (aarch64, s390x), which is the ABI the calls are made in. Byte order is the
interpreter's too: every struct goes through ctypes or struct's native "=" order, never a
fixed one, so s390x (big-endian) reads its counters and records in its own order.
"""

from __future__ import annotations

import ctypes
import platform
import sys

MACHINE = platform.machine()
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "i686": "i386", "i586": "i386"}
_POINTER_BITS = ctypes.sizeof(ctypes.c_void_p) * 8


def _abi(machine: str, pointer_bits: int) -> str:
    machine = _ALIASES.get(machine, machine)
    if machine == "x86_64" and pointer_bits == 32:
        return "i386"
    return machine


ARCH = _abi(MACHINE, _POINTER_BITS)
BIG_ENDIAN = sys.byteorder == "big"

SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "read": 0, "write": 1, "close": 3, "poll": 7, "dup": 32, "fcntl": 72,
        "epoll_create": 213, "epoll_wait": 232, "epoll_ctl": 233,
        "epoll_pwait": 281, "eventfd": 284, "eventfd2": 290, "epoll_create1": 291,
        "timerfd_create": 283, "timerfd_settime": 286, "timerfd_gettime": 287,
        "signalfd": 282, "signalfd4": 289, "epoll_pwait2": 441,
        "io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209,
        "futex": 202, "pselect6": 270, "ppoll": 271, "kcmp": 312, "prlimit64": 302,
        "rt_tgsigqueueinfo": 297, "openat2": 437, "pidfd_open": 434,
        "timer_create": 222, "timer_settime": 223, "timer_delete": 226, "prctl": 157,
    },
    # 32-bit x86, also the compat entry of an x86_64 kernel; the classic calls take a 32-bit
    # time_t (glibc's *_time64 wrappers are used where libc is called instead)
    "i386": {
        "read": 3, "write": 4, "close": 6, "poll": 168, "dup": 41, "fcntl": 55,
        "epoll_create": 254, "epoll_wait": 256, "epoll_ctl": 255,
        "epoll_pwait": 319, "eventfd": 323, "eventfd2": 328, "epoll_create1": 329,
        "timerfd_create": 322, "timerfd_settime": 325, "timerfd_gettime": 326,
        "signalfd": 321, "signalfd4": 327, "epoll_pwait2": 441,
        "io_setup": 245, "io_destroy": 246, "io_getevents": 247, "io_submit": 248,
        "futex": 240, "pselect6": 308, "ppoll": 309, "kcmp": 349, "prlimit64": 340,
        "rt_tgsigqueueinfo": 335, "openat2": 437,
        "timerfd_settime64": 411, "timerfd_gettime64": 410, "pidfd_open": 434,
    },
    # the generic table (include/uapi/asm-generic/unistd.h): none of the legacy calls
    # (epoll_create, epoll_wait, eventfd, signalfd, poll, select), only their successors
    "aarch64": {
        "eventfd2": 19, "epoll_create1": 20, "epoll_ctl": 21, "epoll_pwait": 22,
        "dup": 23, "fcntl": 25, "close": 57, "read": 63, "write": 64,
        "signalfd4": 74, "timerfd_create": 85, "timerfd_settime": 86,
        "timerfd_gettime": 87, "epoll_pwait2": 441,
        "io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_getevents": 4,
        "futex": 98, "pselect6": 72, "ppoll": 73, "kcmp": 272, "prlimit64": 261,
        "rt_tgsigqueueinfo": 240, "openat2": 437, "pidfd_open": 434,
        "timer_create": 107, "timer_settime": 110, "timer_delete": 111, "prctl": 167,
    },
    # 64-bit s390 (arch/s390/kernel/syscalls/syscall.tbl, the "common" and "64" rows): the
    # legacy calls are all there; numbers from 403 on are shared with every architecture
    "s390x": {
        "read": 3, "write": 4, "close": 6, "dup": 41, "fcntl": 55, "poll": 168,
        "epoll_create": 249, "epoll_ctl": 250, "epoll_wait": 251, "epoll_pwait": 312,
        "signalfd": 316, "eventfd": 318, "timerfd_create": 319, "timerfd_settime": 320,
        "timerfd_gettime": 321, "signalfd4": 322, "eventfd2": 323, "epoll_create1": 327,
        "epoll_pwait2": 441,
        "io_setup": 243, "io_destroy": 244, "io_getevents": 245, "io_submit": 246,
        "futex": 238, "pselect6": 301, "ppoll": 302, "kcmp": 343, "prlimit64": 334,
        "rt_tgsigqueueinfo": 330, "openat2": 437, "pidfd_open": 434,
        "timer_create": 254, "timer_settime": 255, "timer_delete": 258, "prctl": 172,
    },
}


def syscall_number(name: str) -> int | None:
    return SYSCALLS.get(ARCH, {}).get(name)


def has_syscall(name: str) -> bool:
    return syscall_number(name) is not None


# struct epoll_event is declared __attribute__((packed)) on x86_64 only
# (include/uapi/linux/eventpoll.h, EPOLL_PACKED): 12 bytes there, 16 elsewhere (aarch64,
# s390x: 4 bytes of padding before the 64-bit data). i386 is packed by its own alignment.
class _EpollEventPacked(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class _EpollEventNatural(ctypes.Structure):
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


def epoll_event_for(abi: str) -> type[ctypes.Structure]:
    return _EpollEventPacked if abi == "x86_64" else _EpollEventNatural


EpollEvent = epoll_event_for(ARCH)


class KernelTimespec(ctypes.Structure):
    """struct __kernel_timespec: 64-bit fields on every ABI. System calls added after the
    y2038 work (epoll_pwait2, the *_time64 calls) take this one, not the libc timespec."""

    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]

    @classmethod
    def of(cls, seconds: float) -> KernelTimespec:
        # whole nanoseconds first, so 0.9999999999 s is (1, 0), never (0, 1000000000)
        whole, nsec = divmod(round(seconds * 1_000_000_000), 1_000_000_000)
        return cls(whole, nsec)
