"""timerfd_create(2), timerfd_settime(2), timerfd_gettime(2), the TFD_IOC_SET_TICKS ioctl,
a timerfd's /proc fdinfo, and a no-op step of the realtime clock for TFD_TIMER_CANCEL_ON_SET.

Times are seconds (floats) in specs; every result also carries exact nanoseconds (`*_ns`),
so that a spec can compare an interval exactly and bound a remaining time (`between`,
`at_least`, `at_most`). Expirations are read with the ordinary `read_u64`.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import re
import time

from kit.adapter import arch
from kit.adapter.libc import Result, call, libc, readonly_page, syscall
from kit.adapter.proc import parse_fdinfo
from kit.registry import constants, operation

# include/uapi/linux/time.h: the clock ids. timerfd_create accepts five of them; the others
# are here so that specs can name the ones it must refuse.
constants(
    CLOCK_REALTIME=0, CLOCK_MONOTONIC=1, CLOCK_PROCESS_CPUTIME_ID=2,
    CLOCK_THREAD_CPUTIME_ID=3, CLOCK_MONOTONIC_RAW=4, CLOCK_REALTIME_COARSE=5,
    CLOCK_MONOTONIC_COARSE=6, CLOCK_BOOTTIME=7, CLOCK_REALTIME_ALARM=8,
    CLOCK_BOOTTIME_ALARM=9, CLOCK_TAI=11,
)
# include/uapi/linux/timerfd.h: the create flags alias the O_* values.
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1 << 0, 1 << 1
constants(TFD_NONBLOCK=os.O_NONBLOCK, TFD_CLOEXEC=os.O_CLOEXEC,
          TFD_TIMER_ABSTIME=TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET=TFD_TIMER_CANCEL_ON_SET)

# _IOW('T', 0, __u64): direction write (1) << 30 | size 8 << 16 | type 'T' << 8 | nr 0.
TFD_IOC_SET_TICKS = (1 << 30) | (8 << 16) | (ord("T") << 8) | 0

# struct __kernel_timespec / __kernel_itimerspec (include/uapi/linux/time_types.h): 64-bit
# fields on every ABI. On 64-bit ABIs libc's timerfd_settime/gettime take exactly that (and
# an LD_PRELOAD interposer sees the calls). On 32-bit ABIs glibc's wrappers take a 32-bit
# time_t and convert the struct themselves, so a bad pointer faults in libc instead of
# failing with EFAULT: there the kernel's *_time64 calls (Linux 5.1) are made directly.
_TIME_T = ctypes.c_int64
_SETTIME64 = arch.syscall_number("timerfd_settime64")
_GETTIME64 = arch.syscall_number("timerfd_gettime64")


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", _TIME_T), ("tv_nsec", _TIME_T)]

    @classmethod
    def of_ns(cls, ns: int) -> "Timespec":
        sec, nsec = divmod(ns, 1_000_000_000)
        return cls(sec, nsec)

    def ns(self) -> int:
        return self.tv_sec * 1_000_000_000 + self.tv_nsec


class LibcTimespec(ctypes.Structure):
    """libc's struct timespec, for clock_gettime/clock_settime through libc: a `long`
    tv_sec on glibc without _TIME_BITS=64 (32 bits on i386), unlike the kernel's."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def ns(self) -> int:
        return self.tv_sec * 1_000_000_000 + self.tv_nsec


class Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]


libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.timerfd_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.clock_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.clock_settime.argtypes = [ctypes.c_int, ctypes.c_void_p]

_IMPORT_PID = os.getpid()
# fd -> clockid of the timerfds this process created (for `from_now`); a fork copies it.
_CLOCKS: dict[int, int] = {}
# fd -> CLOCK_MONOTONIC (ns) just before the last timerfd_settime call on it (timerfd_elapsed).
_SET_AT: dict[int, int] = {}


def _ns(seconds: float) -> int:
    """Seconds (int or float) to integer nanoseconds, rounded to the nearest."""
    return int(round(float(seconds) * 1e9))


def _setting(its: Itimerspec) -> dict:
    """An itimerspec as a spec sees it: seconds, plus the exact nanoseconds."""
    value, interval = its.it_value.ns(), its.it_interval.ns()
    return {"value": value / 1e9, "interval": interval / 1e9,
            "value_ns": value, "interval_ns": interval,
            "value_sec": its.it_value.tv_sec, "value_nsec": its.it_value.tv_nsec,
            "interval_sec": its.it_interval.tv_sec, "interval_nsec": its.it_interval.tv_nsec}


# An alarm clock keeps its base clock's time; clock_gettime refuses the alarm ids when the
# machine has no RTC to wake it (kernel/time/alarmtimer.c), so `from_now` reads the base.
_BASE_CLOCK = {8: 0, 9: 7}   # CLOCK_REALTIME_ALARM -> CLOCK_REALTIME, BOOTTIME_ALARM -> BOOTTIME


def _clock_now_ns(clockid: int) -> int | None:
    ts = LibcTimespec()
    if libc.clock_gettime(_BASE_CLOCK.get(clockid, clockid), ctypes.byref(ts)) != 0:
        return None
    return ts.ns()


def _clock_of(fd: int) -> int | None:
    """The clock of timerfd `fd`: remembered from timerfd_create, else its fdinfo."""
    if fd in _CLOCKS:
        return _CLOCKS[fd]
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            match = re.search(r"^clockid:\s*(-?\d+)", fh.read(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


@operation(family="timerfd", clockid="int", flags="flags")
def timerfd_create(clockid: int = 1, flags: int = 0) -> Result:
    """timerfd_create(2) through the C library; value is the new fd."""
    res = call(libc.timerfd_create, clockid, flags)
    if res.ok:
        res.created_fds.append(res.ret)
        _CLOCKS[res.ret] = clockid
        _SET_AT.pop(res.ret, None)
    return res


@operation(family="timerfd", fd="fd", flags="flags", value="seconds", interval="seconds",
           value_ns="int", interval_ns="int", from_now="bool", clockid="int",
           value_sec="int", value_nsec="int", interval_sec="int", interval_nsec="int",
           null_old="bool", fault="str")
def timerfd_settime(fd: int, flags: int = 0, value: float = 0.0, interval: float = 0.0,
                    value_ns: int | None = None, interval_ns: int | None = None,
                    from_now: bool = False, clockid: int | None = None,
                    value_sec: int | None = None, value_nsec: int | None = None,
                    interval_sec: int | None = None, interval_nsec: int | None = None,
                    null_old: bool = False, fault: str = "") -> Result:
    """timerfd_settime(2): arm with `value` (first expiry) and `interval` (period) in
    seconds, or `value_ns` / `interval_ns` in nanoseconds; a zero value disarms.
    `from_now: true` makes the value an offset from the timer's clock now (read just
    before the call; `clockid` names the clock if the fd was not made by timerfd_create
    here), for TFD_TIMER_ABSTIME. `value_sec`, `value_nsec`, `interval_sec`,
    `interval_nsec` give the timespec fields exactly instead (e.g. an out-of-range tv_nsec).
    `null_old: true` passes NULL as old_value; `fault: new_value` passes NULL as new_value,
    `fault: old_value` a read-only old_value (EFAULT). Value is the old setting {value,
    interval} in seconds, with the same in nanoseconds (value_ns, interval_ns) and as
    timespec fields (value_sec, value_nsec, ...); nothing with null_old."""
    if fault not in ("", "new_value", "old_value"):
        return Result(ret=-1, errno="EINVAL", value="`fault` is new_value or old_value")
    mark = time.monotonic_ns()  # before the clock is read for from_now, and the call
    value_ns = _ns(value) if value_ns is None else value_ns
    interval_ns = _ns(interval) if interval_ns is None else interval_ns
    if from_now:
        clock = clockid if clockid is not None else _clock_of(fd)
        now = None if clock is None else _clock_now_ns(clock)
        if now is None:
            return Result(ret=-1, errno="EINVAL",
                          value="from_now: the timer's clock is unknown; give clockid")
        value_ns += now
    new = Itimerspec(Timespec.of_ns(interval_ns), Timespec.of_ns(value_ns))
    if value_sec is not None or value_nsec is not None:
        new.it_value = Timespec(value_sec or 0, value_nsec or 0)
    if interval_sec is not None or interval_nsec is not None:
        new.it_interval = Timespec(interval_sec or 0, interval_nsec or 0)
    old = Itimerspec()
    _SET_AT[fd] = mark
    new_ptr = None if fault == "new_value" else ctypes.addressof(new)
    old_ptr = readonly_page() if fault == "old_value" else (
        None if null_old else ctypes.addressof(old))
    if _SETTIME64 is None:
        res = call(libc.timerfd_settime, fd, flags, new_ptr, old_ptr)
    else:
        res = syscall(_SETTIME64, fd, flags, new_ptr or 0, old_ptr or 0)
    if res.ok and not null_old:
        res.value = _setting(old)
    return res


@operation(family="timerfd", fd="fd")
def timerfd_elapsed(fd: int) -> Result:
    """Nanoseconds of CLOCK_MONOTONIC since just before the last timerfd_settime on `fd`
    in this process (or the parent it was forked from): an exact lower-bound check for
    "expires no earlier than it_value" after a read or a wait returned, which no stall
    between steps can spoil. EINVAL if the kit never armed `fd`."""
    if fd not in _SET_AT:
        return Result(ret=-1, errno="EINVAL", value="timerfd_settime never ran on this fd")
    elapsed = time.monotonic_ns() - _SET_AT[fd]
    return Result(ret=0, value=elapsed)


@operation(family="timerfd", fd="fd", fault="str")
def timerfd_gettime(fd: int, fault: str = "") -> Result:
    """timerfd_gettime(2); value is {value, interval}: the time to the next expiry and the
    period in seconds (0 and 0: disarmed), with value_ns / interval_ns in nanoseconds and
    the timespec fields (value_sec, value_nsec, ...). `fault: curr_value` passes a read-only
    curr_value (EFAULT)."""
    if fault not in ("", "curr_value"):
        return Result(ret=-1, errno="EINVAL", value="`fault` is curr_value")
    cur = Itimerspec()
    where = readonly_page() if fault else ctypes.addressof(cur)
    res = (call(libc.timerfd_gettime, fd, where) if _GETTIME64 is None
           else syscall(_GETTIME64, fd, where))
    if res.ok:
        res.value = _setting(cur)
    return res


@operation(family="timerfd", blocking=True, fd="fd", ticks="int")
def timerfd_set_ticks(fd: int, ticks: int) -> Result:
    """ioctl(fd, TFD_IOC_SET_TICKS, &ticks) with a uint64 (Linux 3.17,
    CONFIG_CHECKPOINT_RESTORE); 0 on success."""
    count = ctypes.c_uint64(ticks & 0xFFFFFFFFFFFFFFFF)
    # ioctl is variadic: typed arguments here rather than argtypes on the shared libc.
    return call(libc.ioctl, ctypes.c_int(fd), ctypes.c_ulong(TFD_IOC_SET_TICKS),
                ctypes.byref(count))


# fs/timerfd.c, timerfd_show(): "clockid: %d", "ticks: %llu", "settime flags: 0%o",
# "it_value: (%llu, %llu)", "it_interval: (%llu, %llu)".
_PAIR = re.compile(r"^\(\s*(\d+),\s*(\d+)\s*\)$")


def parse_timerfd_fdinfo(text: str) -> dict:
    """A timerfd's fdinfo: the common fields (pos, flags in octal, mnt_id, ino) as the kit's
    fdinfo parses them, then clockid and ticks (decimal), settime_flags (octal, as printed),
    and it_value / it_interval as seconds with *_ns, *_sec, *_nsec beside them."""
    fields = parse_fdinfo(text)
    out = {k: v for k, v in fields.items()
           if k not in ("settime flags", "it_value", "it_interval")}
    for line in text.splitlines():
        key, sep, raw = line.partition(":")
        key, raw = key.strip(), raw.strip()
        if not sep:
            continue
        if key == "settime flags":
            try:
                out["settime_flags"] = int(raw, 8)
            except ValueError:
                out["settime_flags"] = raw
        elif key in ("it_value", "it_interval"):
            match = _PAIR.match(raw)
            if not match:
                out[key] = raw
                continue
            sec, nsec = int(match.group(1)), int(match.group(2))
            out[key] = (sec * 1_000_000_000 + nsec) / 1e9
            out[f"{key}_ns"] = sec * 1_000_000_000 + nsec
            out[f"{key}_sec"], out[f"{key}_nsec"] = sec, nsec
    return out


@operation(family="timerfd", fd="fd")
def timerfd_fdinfo(fd: int) -> Result:
    """/proc/self/fdinfo/N of a timerfd (Linux 3.17): {clockid, ticks, settime_flags,
    it_value, it_interval, ...}; times in seconds, with it_value_ns / it_interval_ns and
    the printed (sec, nsec) pair as *_sec / *_nsec."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            return Result(ret=0, value=parse_timerfd_fdinfo(fh.read()))
    except OSError as exc:
        return Result(ret=-1, errno=_errno.errorcode.get(exc.errno or 0, "EIO"))


@operation(family="timerfd", clockid="int")
def clock_settime_now(clockid: int = 0) -> Result:
    """clock_settime(2) of `clockid` (default CLOCK_REALTIME) to the value clock_gettime(2)
    read from it just before: a discontinuous change of at most a few microseconds
    (backwards), which is what TFD_TIMER_CANCEL_ON_SET reacts to. Needs CAP_SYS_TIME.
    Refused (EPERM) outside a forked child: use it in an in_child step. 0 on success."""
    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="clock_settime_now only runs in a forked child (in_child)")
    ts = LibcTimespec()
    got = call(libc.clock_gettime, clockid, ctypes.byref(ts))
    if not got.ok:
        return got
    return call(libc.clock_settime, clockid, ctypes.byref(ts))
