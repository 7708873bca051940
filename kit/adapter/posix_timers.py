"""POSIX per-process timers (timer_create(2), timer_settime(2), timer_gettime(2)) and
clock_gettime(2), to hold a timerfd against the timers timerfd_create(2) calls analogous.

The timers notify nobody (SIGEV_NONE): their progress is read with timer_gettime. They
are process state the run does not track, so they are made only in a forked process (an
in_child step), where they die with it.
"""

from __future__ import annotations

import ctypes
import os

from kit.adapter.libc import Result, call, libc
from kit.confinement import Refused
from kit.registry import constants, operation

SIGEV_NONE = 1
TIMER_ABSTIME = 1
constants(TIMER_ABSTIME=TIMER_ABSTIME)

_IMPORT_PID = os.getpid()


class Timespec(ctypes.Structure):
    """libc's struct timespec: these calls go through libc, whose time_t is a `long` (32
    bits on a 32-bit ABI without _TIME_BITS=64), unlike the kernel's timerfd structs."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def ns(self) -> int:
        return self.tv_sec * 1_000_000_000 + self.tv_nsec


class Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]


class _Sigevent(ctypes.Structure):
    # struct sigevent: sigev_value (a pointer-sized union), sigev_signo, sigev_notify, then
    # a union padding it to 64 bytes
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("pad", ctypes.c_byte * (64 - ctypes.sizeof(ctypes.c_void_p) - 8))]


libc.timer_create.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.timer_gettime.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

# timer id the spec sees -> glibc's timer_t
_TIMERS: dict[int, ctypes.c_void_p] = {}


@operation(family="timer", clockid="int")
def clock_gettime(clockid: int = 1) -> Result:
    """clock_gettime(2) of `clockid`: value is {sec, nsec, ns} (ns: the whole reading in
    nanoseconds)."""
    ts = Timespec()
    res = call(libc.clock_gettime, clockid, ctypes.byref(ts))
    if res.ok:
        res.value = {"sec": ts.tv_sec, "nsec": ts.tv_nsec, "ns": ts.ns()}
    return res


@operation(family="timer", clockid="int")
def posix_timer_create(clockid: int = 1) -> Result:
    """timer_create(2) on `clockid` with SIGEV_NONE (no notification). Only in a forked
    process (in_child): the timer lives as long as that process. Value is a timer id for
    posix_timer_settime / posix_timer_gettime."""
    if os.getpid() == _IMPORT_PID:
        raise Refused("posix_timer_create only runs in a forked child (in_child): the run "
                      "does not delete timers")
    event = _Sigevent(notify=SIGEV_NONE)
    timer = ctypes.c_void_p()
    res = call(libc.timer_create, clockid, ctypes.byref(event), ctypes.byref(timer))
    if res.ok:
        ident = len(_TIMERS) + 1
        _TIMERS[ident] = timer
        res.value = ident
    return res


def _timer(ident: int) -> ctypes.c_void_p:
    if ident not in _TIMERS:
        raise Refused(f"timer {ident!r} was not made by posix_timer_create in this process")
    return _TIMERS[ident]


@operation(family="timer", timer="int", flags="flags", value_sec="int", value_nsec="int",
           interval_sec="int", interval_nsec="int", value_ns="int")
def posix_timer_settime(timer: int, flags: int = 0, value_sec: int = 0, value_nsec: int = 0,
                        interval_sec: int = 0, interval_nsec: int = 0,
                        value_ns: int | None = None) -> Result:
    """timer_settime(2) with the exact timespec fields (TIMER_ABSTIME: it_value on the
    timer's clock), or it_value as `value_ns` nanoseconds (e.g. a clock reading plus a
    fraction of a second, which whole fields cannot add without a carry). 0 on success."""
    if value_ns is not None:
        value_sec, value_nsec = divmod(value_ns, 1_000_000_000)
    new = Itimerspec(Timespec(interval_sec, interval_nsec), Timespec(value_sec, value_nsec))
    return call(libc.timer_settime, _timer(timer), flags, ctypes.byref(new), None)


@operation(family="timer", timer="int")
def posix_timer_gettime(timer: int) -> Result:
    """timer_gettime(2): value is {value_ns, interval_ns}, the time to the next expiry
    (0: disarmed, or a one-shot timer that has expired) and the period."""
    cur = Itimerspec()
    res = call(libc.timer_gettime, _timer(timer), ctypes.byref(cur))
    if res.ok:
        res.value = {"value_ns": cur.it_value.ns(), "interval_ns": cur.it_interval.ns()}
    return res
