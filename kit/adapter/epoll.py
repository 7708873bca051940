"""epoll(7): creation, the interest list, and waiting (epoll_wait, epoll_pwait,
epoll_pwait2), with the per-architecture struct epoll_event layout from kit.adapter.arch,
and the interest list as /proc/self/fdinfo shows it."""

from __future__ import annotations

import ctypes
import os
import re

from kit.adapter import arch, signals
from kit.adapter.libc import Result, call, inaccessible_page, libc, readonly_page, syscall
from kit.registry import CONSTANTS, constants, operation

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
libc.epoll_pwait.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                             ctypes.c_void_p]

# The kernel's sigset_t is _NSIG / 8 bytes (64 signals) on every architecture the kit
# knows; the raw epoll_pwait2 syscall takes that size as its sixth argument.
KERNEL_SIGSET_SIZE = 8


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


_BY = ("data", "index", "count")


def _shape(res: Result, buf, by: str) -> Result:
    """The value of a successful wait, in the shape `by` asks for:

    data   {data: events}: each event's mask under its 64-bit data (the default)
    index  {0: {data, events}, 1: ...} in the order the kernel returned them
    count  the number of events (the return value), e.g. to add up across threads
    """
    if not res.ok:
        return res
    if by == "index":
        res.value = {i: {"data": buf[i].data, "events": buf[i].events} for i in range(res.ret)}
    elif by == "count":
        res.value = res.ret
    else:
        res.value = decode_events(buf, res.ret)
    return res


def _bad_by(by: str) -> Result | None:
    return None if by in _BY else Result(ret=-1, errno="EINVAL",
                                         value=f"`by` must be one of {', '.join(_BY)}")


@operation(family="epoll", blocking=True, epfd="fd", maxevents="int", timeout="int", by="str",
           buffer="str")
def epoll_wait(epfd: int, maxevents: int = 16, timeout: int = 0, by: str = "data",
               buffer: str = "normal") -> Result:
    """epoll_wait(2), `timeout` in ms; value maps each event's data to its event mask
    (`by: index` lists the events in order, `by: count` gives their number).
    `buffer: readonly` passes a read-only page as the events array (for EFAULT)."""
    bad = _bad_by(by)
    if bad:
        return bad
    if buffer == "readonly":
        if maxevents * ctypes.sizeof(Event) > 4096:
            return Result(ret=-1, errno="EINVAL", value="the read-only page holds fewer events")
        return call(libc.epoll_wait, epfd, readonly_page(), maxevents, timeout)
    if buffer != "normal":
        return Result(ret=-1, errno="EINVAL", value="`buffer` is normal or readonly")
    buf = (Event * max(maxevents, 1))()
    return _shape(call(libc.epoll_wait, epfd, buf, maxevents, timeout), buf, by)


def _sigset(spec: str | None):
    """A glibc sigset_t for the spec (None: no mask, a NULL pointer). The watchdog's
    signal is never blocked, so a wait stays bounded whatever mask a spec asks for."""
    if spec is None:
        return None, None
    numbers, bad = signals.parse_signals(spec)
    if bad:
        return None, Result(ret=-1, errno="EINVAL", value=f"unknown signal {bad!r}")
    sigset = signals.SigSet()
    libc.sigemptyset(ctypes.byref(sigset))
    for number in numbers:
        if number != signals.WATCHDOG_SIGNAL:
            libc.sigaddset(ctypes.byref(sigset), number)
    return sigset, None


def _raw_mask(sigset, sigsetsize: int | None, fault: str) -> tuple[int, int, Result | None]:
    """The raw syscalls' (sigmask pointer, sigsetsize): `fault: sigmask` points the mask at
    a page the kernel cannot read; `sigsetsize` overrides the kernel's own size. Without
    either, a NULL mask has size 0 and a given one the kernel's 8 bytes."""
    if fault not in ("", "sigmask"):
        return 0, 0, Result(ret=-1, errno="EINVAL", value="`fault` is sigmask")
    pointer = inaccessible_page() if fault else (
        0 if sigset is None else ctypes.addressof(sigset))
    if sigsetsize is None:
        sigsetsize = KERNEL_SIGSET_SIZE if pointer else 0
    return pointer, sigsetsize, None


@operation(family="epoll", blocking=True, epfd="fd", maxevents="int", timeout="int",
           sigmask="str", by="str", sigsetsize="int", fault="str")
def epoll_pwait(epfd: int, maxevents: int = 16, timeout: int = 0, sigmask: str | None = None,
                by: str = "data", sigsetsize: int | None = None, fault: str = "") -> Result:
    """epoll_pwait(2) through the C library, `timeout` in ms. `sigmask` lists the signals
    the thread blocks during the wait ("SIGUSR1,SIGUSR2"; "" is the empty set; omitted is
    a NULL mask). Value as for epoll_wait. `sigsetsize` (the raw call's sixth argument) or
    `fault: sigmask` (a mask pointer the kernel cannot read) make it the raw system call,
    which the C library's wrapper would not let through."""
    bad = _bad_by(by)
    if bad:
        return bad
    sigset, bad = _sigset(sigmask)
    if bad:
        return bad
    buf = (Event * max(maxevents, 1))()
    if sigsetsize is None and not fault:
        mask = None if sigset is None else ctypes.byref(sigset)
        return _shape(call(libc.epoll_pwait, epfd, buf, maxevents, timeout, mask), buf, by)
    number = arch.syscall_number("epoll_pwait")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    pointer, size, bad = _raw_mask(sigset, sigsetsize, fault)
    if bad:
        return bad
    return _shape(syscall(number, epfd, ctypes.addressof(buf), maxevents, timeout, pointer,
                          size), buf, by)


@operation(family="epoll", blocking=True, epfd="fd", maxevents="int", timeout="any",
           tv_sec="int", tv_nsec="int", sigmask="str", by="str", sigsetsize="int",
           fault="str")
def epoll_pwait2(epfd: int, maxevents: int = 16, timeout: float | None = 0,
                 tv_sec: int | None = None, tv_nsec: int | None = None,
                 sigmask: str | None = None, by: str = "data", sigsetsize: int | None = None,
                 fault: str = "") -> Result:
    """The raw epoll_pwait2 system call (Linux 5.11). `timeout` in seconds becomes a struct
    timespec; negative or null is a NULL pointer (wait indefinitely). `tv_sec` / `tv_nsec`
    give the timespec fields exactly instead (either one alone leaves the other 0).
    `sigmask`, `sigsetsize` and `fault` as for epoll_pwait. Value as for epoll_wait."""
    number = arch.syscall_number("epoll_pwait2")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    bad = _bad_by(by)
    if bad:
        return bad
    sigset, bad = _sigset(sigmask)
    if bad:
        return bad
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float))):
        return Result(ret=-1, errno="EINVAL", value="`timeout` is seconds, or null")
    if tv_sec is not None or tv_nsec is not None:
        ts = arch.KernelTimespec(tv_sec or 0, tv_nsec or 0)
    elif timeout is None or timeout < 0:
        ts = None
    else:
        ts = arch.KernelTimespec.of(float(timeout))
    pointer, size, bad = _raw_mask(sigset, sigsetsize, fault)
    if bad:
        return bad
    buf = (Event * max(maxevents, 1))()
    res = syscall(number, epfd, ctypes.addressof(buf), maxevents,
                  0 if ts is None else ctypes.addressof(ts), pointer, size)
    return _shape(res, buf, by)


# fs/eventpoll.c, ep_show_fdinfo():
#   "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"
_TFD = re.compile(r"^tfd:\s*(-?\d+)\s+events:\s*([0-9a-fA-F]+)\s+data:\s*([0-9a-fA-F]+)"
                  r"(?:\s+pos:\s*(-?\d+))?(?:\s+ino:\s*([0-9a-fA-F]+))?"
                  r"(?:\s+sdev:\s*([0-9a-fA-F]+))?")


def parse_epoll_fdinfo(text: str) -> list[dict]:
    """Every tfd line of an epoll fd's fdinfo as {tfd, events, data, pos, ino, sdev}
    (events, data, ino and sdev are printed in hex by the kernel)."""
    out = []
    for line in text.splitlines():
        match = _TFD.match(line.strip())
        if not match:
            continue
        tfd, events, data, pos, ino, sdev = match.groups()
        entry = {"tfd": int(tfd), "events": int(events, 16), "data": int(data, 16)}
        if pos is not None:
            entry["pos"] = int(pos)
        if ino is not None:
            entry["ino"] = int(ino, 16)
        if sdev is not None:
            entry["sdev"] = int(sdev, 16)
        out.append(entry)
    return out


@operation(family="epoll", fd="fd", tfd="int")  # tfd: a number to look up, maybe closed
def epoll_fdinfo(fd: int, tfd: int = -1) -> Result:
    """The interest list of epoll fd `fd` from /proc/self/fdinfo: value is {count,
    registered, events, data, entries}: `count` tfd lines; `registered` whether one of them
    names target fd `tfd`, and then its `events`, `data`, `pos`, `ino` and `sdev`; `entries`
    every line by tfd."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            entries = parse_epoll_fdinfo(fh.read())
    except OSError as exc:
        import errno as _errno

        return Result(ret=-1, errno=_errno.errorcode.get(exc.errno or 0, "EIO"))
    value: dict = {"count": len(entries), "registered": False,
                   "entries": {e["tfd"]: {k: v for k, v in e.items() if k != "tfd"}
                               for e in entries}}
    for entry in entries:
        if entry["tfd"] == tfd:
            # with pos, ino and sdev where the kernel prints them (4.13 on)
            value.update(registered=True, **{k: v for k, v in entry.items() if k != "tfd"})
            break
    return Result(ret=0, value=value)


KCMP_EPOLL_TFD = 7


class _KcmpEpollSlot(ctypes.Structure):
    _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32), ("toff", ctypes.c_uint64)]


@operation(family="epoll", fd="fd", epfd="fd", tfd="int", toff="int")
def kcmp_epoll_tfd(fd: int, epfd: int, tfd: int, toff: int = 0) -> Result:
    """kcmp(2) KCMP_EPOLL_TFD within the kit's own process: 0 when descriptor `fd` refers
    to the file registered in epoll instance `epfd` under descriptor number `tfd` (the
    `toff`-th such registration); 1, 2 or 3 for another file; ENOENT when `tfd` is not
    registered. Needs CONFIG_KCMP (CONFIG_CHECKPOINT_RESTORE before 5.12)."""
    number = arch.syscall_number("kcmp")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    slot = _KcmpEpollSlot(epfd & 0xFFFFFFFF, tfd & 0xFFFFFFFF, toff & 0xFFFFFFFFFFFFFFFF)
    pid = os.getpid()
    return syscall(number, pid, pid, KCMP_EPOLL_TFD, fd, ctypes.addressof(slot))


# ioctl_eventpoll(2), Linux 6.9: include/uapi/linux/eventpoll.h
class EpollParams(ctypes.Structure):
    _fields_ = [("busy_poll_usecs", ctypes.c_uint32), ("busy_poll_budget", ctypes.c_uint16),
                ("prefer_busy_poll", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


constants(EPIOCSPARAMS=0x40088A01, EPIOCGPARAMS=0x80088A02,  # _IOW/_IOR(0x8A, 1/2, 8 bytes)
          NAPI_POLL_WEIGHT=64)
_PARAM_BITS = {"busy_poll_usecs": 32, "busy_poll_budget": 16, "prefer_busy_poll": 8, "pad": 8}


def _epoll_ioctl(fd: int, request: int, params: EpollParams, fault: str) -> Result:
    """ioctl(2) with a struct epoll_params, on an epoll fd only (kit.confinement)."""
    from kit.confinement import check_epoll_ioctl

    check_epoll_ioctl(fd, request)
    if fault not in ("", "argp"):
        return Result(ret=-1, errno="EINVAL", value="`fault` is argp")
    pointer = inaccessible_page() if fault else ctypes.addressof(params)
    # ioctl is variadic: typed arguments here rather than argtypes on the shared libc.
    return call(libc.ioctl, ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_void_p(pointer))


@operation(family="epoll", fd="fd", busy_poll_usecs="int", busy_poll_budget="int",
           prefer_busy_poll="int", pad="int", fault="str")
def epoll_params_set(fd: int, busy_poll_usecs: int = 0, busy_poll_budget: int = 0,
                     prefer_busy_poll: int = 0, pad: int = 0, fault: str = "") -> Result:
    """ioctl(fd, EPIOCSPARAMS, &params) on an epoll fd (ioctl_eventpoll(2), Linux 6.9).
    Each field must fit its C type (u32, u16, u8, u8): anything else is refused, an error
    of the spec, never silently truncated. `fault: argp` passes a pointer the kernel
    cannot read (EFAULT)."""
    from kit.confinement import Refused

    given = {"busy_poll_usecs": busy_poll_usecs, "busy_poll_budget": busy_poll_budget,
             "prefer_busy_poll": prefer_busy_poll, "pad": pad}
    for name, value in given.items():
        if not 0 <= value < 1 << _PARAM_BITS[name]:
            raise Refused(f"{name}={value} does not fit the struct's "
                          f"u{_PARAM_BITS[name]}")
    return _epoll_ioctl(fd, CONSTANTS["EPIOCSPARAMS"], EpollParams(**given), fault)


@operation(family="epoll", fd="fd", fault="str")
def epoll_params_get(fd: int, fault: str = "") -> Result:
    """ioctl(fd, EPIOCGPARAMS, &params) on an epoll fd: value is {busy_poll_usecs,
    busy_poll_budget, prefer_busy_poll, pad}, the struct as the kernel filled it (it is
    set to 0xff bytes first, so a field the kernel leaves alone shows). `fault: argp`
    passes a pointer the kernel cannot write (EFAULT)."""
    params = EpollParams.from_buffer_copy(b"\xff" * ctypes.sizeof(EpollParams))
    res = _epoll_ioctl(fd, CONSTANTS["EPIOCGPARAMS"], params, fault)
    if res.ok:
        res.value = {name: getattr(params, name) for name, _ in EpollParams._fields_}
    return res
