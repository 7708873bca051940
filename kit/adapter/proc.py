"""What /proc says about the kit's own descriptors: link names and fdinfo fields."""

from __future__ import annotations

import os

from kit.adapter.libc import Result, from_oserror
from kit.registry import operation

# Fields whose kernel format is not decimal: fs/proc/fd.c prints flags in octal,
# fs/eventfd.c eventfd-count with %llx, fs/signalfd.c sigmask in hex, fs/timerfd.c
# "settime flags" in octal.
_FIELD_BASES = {"flags": 8, "eventfd-count": 16, "sigmask": 16, "settime flags": 8}


def parse_fdinfo(text: str) -> dict:
    """Parse 'key: value' lines; numbers are converted in the base the kernel prints them.

    Repeated keys (epoll's tfd lines) are kept as lists of raw strings.
    """
    fields: dict = {}
    for line in text.splitlines():
        key, sep, raw = line.partition(":")
        if not sep:
            continue
        key, raw = key.strip(), raw.strip()
        try:
            value = int(raw, _FIELD_BASES.get(key, 10))
        except ValueError:
            value = raw
        if key in fields:
            prev = fields[key]
            fields[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            fields[key] = value
    return fields


@operation(family="proc", fd="fd")
def fd_link(fd: int) -> Result:
    """readlink of /proc/self/fd/N; value is the link text (e.g. anon_inode:[eventfd])."""
    try:
        return Result(ret=0, value=os.readlink(f"/proc/self/fd/{fd}"))
    except OSError as exc:
        return from_oserror(exc)


@operation(family="proc", fd="fd")
def fdinfo(fd: int) -> Result:
    """/proc/self/fdinfo/N parsed into fields (flags octal, eventfd-count hex, rest decimal)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            return Result(ret=0, value=parse_fdinfo(fh.read()))
    except OSError as exc:
        return from_oserror(exc)


@operation(family="proc", fd="fd")
def fdinfo_mode(fd: int) -> Result:
    """The permission bits of /proc/self/fdinfo/N and of /proc/self/fdinfo itself (stat(2),
    nothing opened); value is {file, dir}, e.g. {file: 0o444, dir: 0o555}."""
    try:
        file = os.stat(f"/proc/self/fdinfo/{fd}").st_mode & 0o7777
        directory = os.stat("/proc/self/fdinfo").st_mode & 0o7777
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=0, value={"file": file, "dir": directory})


@operation(family="proc", fd="fd")
def reopen_directory(fd: int) -> Result:
    """open(2) of /proc/self/fd/N with O_RDONLY|O_DIRECTORY|O_CLOEXEC: ENOTDIR unless the
    spec's own descriptor N is a directory (then a new descriptor of that same directory).
    Only O_DIRECTORY: the magic link would otherwise reopen whatever N refers to."""
    try:
        new = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=new, value=new, created_fds=[new])


@operation(family="proc", fd="fd")
def fd_is_open(fd: int) -> Result:
    """Whether /proc/self/fd/N exists; value is a boolean."""
    return Result(ret=0, value=os.path.lexists(f"/proc/self/fd/{fd}"))


def open_fds() -> set[int]:
    """The process's open descriptors, for leak checks (without listdir's own)."""
    listed = os.listdir("/proc/self/fd")
    return {int(name) for name in listed if os.path.lexists(f"/proc/self/fd/{name}")}


def blocked_in_syscall(tid: int, pid: int | str = "self") -> bool | None:
    """Whether thread `tid` of process `pid` sleeps inside a system call other than futex
    (where a Python thread waits for the GIL or a lock: not the call under test).

    None when /proc cannot tell (no per-task syscall file, e.g. on some sandboxes).
    """
    from kit.adapter.arch import syscall_number

    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/task/{tid}/syscall") as fh:
            first = fh.read().split()[0]
    except (OSError, IndexError):
        return None
    if state not in ("S", "D") or not first.lstrip("-").isdigit():
        return False
    number = int(first)
    return number >= 0 and number != syscall_number("futex")


def run_queue_wait(tid: int) -> float | None:
    """Seconds thread `tid` of this process has spent runnable but waiting for a CPU, from
    /proc's schedstat (its second field, run_delay in ns). None where the kernel does not
    keep it (no CONFIG_SCHED_INFO, a sandbox without the file)."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None
