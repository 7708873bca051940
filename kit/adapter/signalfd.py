"""signalfd(2): the C library wrapper, the raw signalfd4 and legacy signalfd system calls,
reading struct signalfd_siginfo records, a signalfd's /proc fdinfo, and two helpers for
checking what a record says (sigqueue(3) with a value, and the caller's own ids).

Masks are strings of signal names or numbers, as for signal_block ("SIGUSR1,SIGUSR2";
"" is the empty set). The kit's watchdog signal (SIGRTMAX-1) is refused in a mask: a
signalfd read would consume it, and a hanging call would no longer be interrupted.
Everything that blocks or sends a signal belongs in an in_child step (see signals.py).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import signal
import struct
import threading

from kit.adapter import arch
from kit.adapter.libc import Result, call, libc, syscall
from kit.adapter.proc import parse_fdinfo
from kit.adapter.signals import _refuse_send, parse_signals
from kit.adapter.watchdog import WATCHDOG_SIGNAL, WATCHDOG_SIGNAL_NAME
from kit.registry import constants, operation

# include/uapi/linux/signalfd.h: the flags alias the O_* values.
constants(SFD_NONBLOCK=os.O_NONBLOCK, SFD_CLOEXEC=os.O_CLOEXEC)
# include/uapi/asm-generic/siginfo.h: si_code values a signalfd_siginfo's ssi_code shows.
constants(SI_USER=0, SI_KERNEL=0x80, SI_QUEUE=-1, SI_TIMER=-2, SI_MESGQ=-3, SI_ASYNCIO=-4,
          SI_SIGIO=-5, SI_TKILL=-6)

SIGINFO_SIZE = 128
# struct signalfd_siginfo (include/uapi/linux/signalfd.h): fixed-size fields, the same on
# every architecture, padded to 128 bytes.
_SIGINFO = struct.Struct("=IiiIIiIIIIiiQQQQHHiQI28x")
_SIGINFO_FIELDS = ("signo", "errno", "code", "pid", "uid", "fd", "tid", "band", "overrun",
                   "trapno", "status", "int", "ptr", "utime", "stime", "addr", "addr_lsb",
                   "pad2", "syscall", "call_addr", "arch")
assert _SIGINFO.size == SIGINFO_SIZE

# The kernel's sigset_t: one bit per signal, signal N at bit N-1 (_NSIG = 64 on x86_64 and
# aarch64, so 8 bytes: the sizemask the kernel insists on).
KERNEL_SIGSET_SIZE = 8


class SigSet(ctypes.Structure):
    """glibc's sigset_t (1024 bits); the kernel reads its first KERNEL_SIGSET_SIZE bytes."""

    _fields_ = [("val", ctypes.c_uint64 * 16)]


libc.signalfd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
# libc.read's argtypes and restype are set by kit.adapter.fds.


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        if signal.SIGRTMIN < signum < signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return str(signum)


def names(mask: int) -> str:
    """A 64-bit signal mask as "SIGINT,SIGQUIT" (by number)."""
    return ",".join(_name(n) for n in range(1, 65) if mask >> (n - 1) & 1)


def _mask(spec: str, bits: int | None = None) -> tuple[SigSet | None, Result | None]:
    """A signal set with exactly the named signals (SIGKILL and SIGSTOP too: the kernel is
    to ignore them), built bit by bit so that any signal 1..64 can be named; or, with
    `bits`, the set whose bit N-1 is signal N. A number (`mask: $signum`) is one signal."""
    numbers, bad = parse_signals(spec if isinstance(spec, str) else str(spec))
    if bad:
        return None, Result(ret=-1, errno="EINVAL", value=f"unknown signal {bad!r}")
    if bits is not None:
        numbers += [n for n in range(1, 65) if bits >> (n - 1) & 1]
    sigset = SigSet()
    for number in numbers:
        if number == WATCHDOG_SIGNAL:
            return None, Result(ret=-1, errno="EINVAL",
                                value=f"{WATCHDOG_SIGNAL_NAME} is the kit's watchdog signal: "
                                      f"a signalfd must not take it")
        if not 1 <= number <= 64:
            return None, Result(ret=-1, errno="EINVAL", value=f"no signal {number}")
        sigset.val[0] |= 1 << (number - 1)
    return sigset, None


def _created(res: Result, fd: int) -> Result:
    if res.ok and fd == -1:
        res.created_fds.append(res.ret)
    return res


@operation(family="signalfd", fd="fd", mask="str", bits="int", flags="flags")
def signalfd(fd: int = -1, mask: str = "", bits: int | None = None, flags: int = 0) -> Result:
    """signalfd(2) through the C library (glibc uses signalfd4): `fd` -1 makes a new
    signalfd, an existing signalfd gets the set as its new mask. `mask` names the signals
    ("SIGUSR1,SIGUSR2"; "" the empty set); `bits` adds the signals of a 64-bit number
    (bit N-1 is signal N), e.g. a drawn parameter. Value is the fd returned."""
    sigset, bad = _mask(mask, bits)
    if bad:
        return bad
    return _created(call(libc.signalfd, fd, ctypes.byref(sigset), flags), fd)


@operation(family="signalfd", fd="fd", mask="str", flags="flags", sizemask="int")
def signalfd4_syscall(fd: int = -1, mask: str = "", flags: int = 0,
                      sizemask: int = KERNEL_SIGSET_SIZE) -> Result:
    """The raw signalfd4 system call with its `sizemask` argument (default 8, the kernel's
    sigset_t size); value is the fd returned."""
    number = arch.syscall_number("signalfd4")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    sigset, bad = _mask(mask)
    if bad:
        return bad
    return _created(syscall(number, fd, ctypes.addressof(sigset), sizemask, flags), fd)


@operation(family="signalfd", fd="fd", mask="str", sizemask="int")
def signalfd_syscall(fd: int = -1, mask: str = "", sizemask: int = KERNEL_SIGSET_SIZE) -> Result:
    """The legacy flag-less signalfd system call (absent on aarch64); value is the fd."""
    number = arch.syscall_number("signalfd")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    sigset, bad = _mask(mask)
    if bad:
        return bad
    return _created(syscall(number, fd, ctypes.addressof(sigset), sizemask), fd)


def parse_siginfo(raw: bytes) -> dict:
    """Whole signalfd_siginfo records, by index: {0: {signo, name, code, pid, uid, ...}}."""
    out = {}
    for i in range(len(raw) // SIGINFO_SIZE):
        record = dict(zip(_SIGINFO_FIELDS, _SIGINFO.unpack_from(raw, i * SIGINFO_SIZE)))
        del record["pad2"]
        record["name"] = _name(record["signo"])
        out[i] = record
    return out


@operation(family="signalfd", blocking=True, fd="fd", count="int", size="int")
def read_siginfo(fd: int, count: int = 1, size: int | None = None) -> Result:
    """read(2) of a signalfd into a buffer for `count` struct signalfd_siginfo (128 bytes
    each), or of exactly `size` bytes. Returns the byte count; value maps each record's
    index (0, 1, ... in the order read) to its fields without the ssi_ prefix: {signo,
    name, errno, code, pid, uid, fd, tid, band, overrun, trapno, status, int, ptr, utime,
    stime, addr, addr_lsb, syscall, call_addr, arch}."""
    length = count * SIGINFO_SIZE if size is None else size
    buf = ctypes.create_string_buffer(max(length, 1))
    res = call(libc.read, fd, buf, length)
    if res.ok:
        res.value = parse_siginfo(buf.raw[: res.ret])
    return res


def parse_signalfd_fdinfo(text: str) -> dict:
    """A signalfd's fdinfo: the common fields, `sigmask` as the number the kernel prints
    in hex (fs/signalfd.c, render_sigset_t), and `signals`: those bits as names."""
    fields = parse_fdinfo(text)
    for line in text.splitlines():
        key, sep, raw = line.partition(":")
        if sep and key.strip() == "sigmask":
            try:
                fields["sigmask"] = int(raw.strip(), 16)
                fields["signals"] = names(fields["sigmask"])
            except ValueError:
                fields["sigmask"] = raw.strip()
    return fields


@operation(family="signalfd", fd="fd")
def signalfd_fdinfo(fd: int) -> Result:
    """/proc/self/fdinfo/N of a signalfd (Linux 3.8): the common fields, `sigmask` (the
    hexadecimal mask, as a number) and `signals` (its bits as names, "SIGUSR1,SIGUSR2")."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            return Result(ret=0, value=parse_signalfd_fdinfo(fh.read()))
    except OSError as exc:
        return Result(ret=-1, errno=_errno.errorcode.get(exc.errno or 0, "EIO"))


class _SigVal(ctypes.Union):
    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, _SigVal]


@operation(family="signal", signum="int", value="int")
def sigqueue(signum: int, value: int = 0) -> Result:
    """sigqueue(3) of `signum` to the kit's own process with `value` in the union sigval:
    a value that fits 32 bits in sival_int (ssi_int reads it back on every byte order;
    ssi_ptr is the value on little-endian ABIs, value << 32 on big-endian s390x), a wider
    one in sival_ptr (sival_int overlays its first 4 bytes: the low half on little-endian
    x86_64 and aarch64). Refused, like signal_process, for a signal whose default action
    would end the run: signal_install it first. 0 on success."""
    refused = _refuse_send(signum)
    if refused:
        return refused
    sigval = _SigVal()
    if 0 <= value <= 0xFFFFFFFF:
        sigval.sival_int = ctypes.c_int(value).value
    else:
        sigval.sival_ptr = value & 0xFFFFFFFFFFFFFFFF
    return call(libc.sigqueue, os.getpid(), signum, sigval)


@operation(family="signal")
def process_ids() -> Result:
    """The caller's ids, to compare with a signalfd_siginfo: {pid, tid, ppid, uid, euid}
    (tid is the calling thread's)."""
    return Result(ret=0, value={"pid": os.getpid(), "tid": threading.get_native_id(),
                                "ppid": os.getppid(), "uid": os.getuid(),
                                "euid": os.geteuid()})


# siginfo_t as rt_tgsigqueueinfo(2) reads it (include/uapi/asm-generic/siginfo.h): si_signo,
# si_errno, si_code, then the union, aligned like a pointer (at 16 on 64-bit ABIs, after
# padding; at 12 on 32-bit ones), holding _rt's si_pid, si_uid and the sigval (a pointer
# wide); 128 bytes in all.
_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)
_QUEUED_SIGINFO = struct.Struct("=iiiiiIQ96x" if _POINTER_SIZE == 8 else "=iiiiII104x")
_SIGVAL_MASK = (1 << (8 * _POINTER_SIZE)) - 1
assert _QUEUED_SIGINFO.size == 128


@operation(family="signal", signum="int", value="int")
def sigqueue_thread(signum: int, value: int = 0) -> Result:
    """rt_tgsigqueueinfo(2): queue `signum` with `value` (the sigval, placed as sigqueue
    places it: ssi_int reads back a 32-bit value on every byte order) to the calling thread only, with si_code SI_QUEUE. Unlike sigqueue, no other
    thread can take it, so a signal this thread blocks stays pending here even in a
    process with other threads. Refused for a signal that is not blocked here and whose
    default action would end the run. 0 on success."""
    number = arch.syscall_number("rt_tgsigqueueinfo")
    if number is None:
        return Result(ret=-1, errno="ENOSYS")
    if signum not in signal.pthread_sigmask(signal.SIG_BLOCK, []):
        refused = _refuse_send(signum)
        if refused:
            return refused
    head = (signum, 0, -1, 0) if _POINTER_SIZE == 8 else (signum, 0, -1)
    sigval = value & _SIGVAL_MASK
    if arch.BIG_ENDIAN and 0 <= value <= 0xFFFFFFFF and _POINTER_SIZE == 8:
        sigval <<= 32     # a 32-bit value goes in sival_int, the first 4 bytes, as sigqueue
    info = ctypes.create_string_buffer(_QUEUED_SIGINFO.pack(
        *head, os.getpid(), os.getuid(), sigval), 128)
    return syscall(number, os.getpid(), threading.get_native_id(), signum,
                   ctypes.addressof(info))
