"""epoll(7): creation, the interest list, and waiting, with the per-architecture
struct epoll_event layout from kit.adapter.arch."""

from __future__ import annotations

import ctypes

from kit.adapter import arch
from kit.adapter.libc import Result, call, libc
from kit.registry import constants, operation

# include/uapi/linux/eventpoll.h
constants(
    EPOLLIN=0x1, EPOLLPRI=0x2, EPOLLOUT=0x4, EPOLLERR=0x8, EPOLLHUP=0x10,
    EPOLLRDNORM=0x40, EPOLLRDBAND=0x80, EPOLLWRNORM=0x100, EPOLLWRBAND=0x200,
    EPOLLMSG=0x400, EPOLLRDHUP=0x2000, EPOLLEXCLUSIVE=1 << 28, EPOLLWAKEUP=1 << 29,
    EPOLLONESHOT=1 << 30, EPOLLET=1 << 31,
    EPOLL_CTL_ADD=1, EPOLL_CTL_DEL=2, EPOLL_CTL_MOD=3, EPOLL_CLOEXEC=0o2000000,
)

Event = arch.EpollEvent
libc.epoll_create.argtypes = [ctypes.c_int]
libc.epoll_create1.argtypes = [ctypes.c_int]
libc.epoll_ctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.epoll_wait.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]


def _created(res: Result) -> Result:
    if res.ok:
        res.created_fds.append(res.ret)
    return res


@operation(family="epoll", size="int")
def epoll_create(size: int = 1) -> Result:
    """epoll_create(2); value is the new epoll fd."""
    return _created(call(libc.epoll_create, size))


@operation(family="epoll", flags="flags")
def epoll_create1(flags: int = 0) -> Result:
    """epoll_create1(2); value is the new epoll fd."""
    return _created(call(libc.epoll_create1, flags))


@operation(family="epoll", epfd="fd", op="flags", fd="fd", events="flags", data="int",
           null_event="bool")
def epoll_ctl(epfd: int, op: int, fd: int, events: int = 0x1, data: int | None = None,
              null_event: bool = False) -> Result:
    """epoll_ctl(2); `data` (default: the fd) is the 64-bit user data reported back."""
    event = Event(events & 0xFFFFFFFF, (fd if data is None else data) & 0xFFFFFFFFFFFFFFFF)
    return call(libc.epoll_ctl, epfd, op, fd, None if null_event else ctypes.byref(event))


def decode_events(buf, count: int) -> dict[int, int]:
    return {buf[i].data: buf[i].events for i in range(count)}


@operation(family="epoll", blocking=True, epfd="fd", maxevents="int", timeout="int")
def epoll_wait(epfd: int, maxevents: int = 16, timeout: int = 0) -> Result:
    """epoll_wait(2), `timeout` in ms; value maps each event's data to its event mask."""
    buf = (Event * max(maxevents, 1))()
    res = call(libc.epoll_wait, epfd, buf, maxevents, timeout)
    if res.ok:
        res.value = decode_events(buf, res.ret)
    return res
