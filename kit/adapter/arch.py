"""Architecture facts chosen at run time: syscall numbers and struct layouts.

Tables come from the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl
and the generic include/uapi/asm-generic/unistd.h used by aarch64). A syscall that
an architecture never had (aarch64 has no legacy eventfd or epoll_create) is simply
absent, and specs that need it are "not applicable" there.
"""

from __future__ import annotations

import ctypes
import platform

MACHINE = platform.machine()
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
ARCH = _ALIASES.get(MACHINE, MACHINE)

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
    },
    "aarch64": {
        "eventfd2": 19, "epoll_create1": 20, "epoll_ctl": 21, "epoll_pwait": 22,
        "dup": 23, "fcntl": 25, "close": 57, "read": 63, "write": 64,
        "signalfd4": 74, "timerfd_create": 85, "timerfd_settime": 86,
        "timerfd_gettime": 87, "epoll_pwait2": 441,
        "io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_getevents": 4,
        "futex": 98, "pselect6": 72, "ppoll": 73, "kcmp": 272, "prlimit64": 261,
        "rt_tgsigqueueinfo": 240, "openat2": 437, "pidfd_open": 434,
    },
}


def syscall_number(name: str) -> int | None:
    return SYSCALLS.get(ARCH, {}).get(name)


def has_syscall(name: str) -> bool:
    return syscall_number(name) is not None


# struct epoll_event is declared __attribute__((packed)) on x86_64 only
# (include/uapi/linux/eventpoll.h, EPOLL_PACKED): 12 bytes there, 16 elsewhere.
class _EpollEventPacked(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class _EpollEventNatural(ctypes.Structure):
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


EpollEvent = _EpollEventPacked if ARCH == "x86_64" else _EpollEventNatural
