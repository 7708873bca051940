"""What /proc says about the kit's own descriptors: link names and fdinfo fields."""

from __future__ import annotations

import os
import threading
import time

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


def _task_syscall(tid: int, pid: int | str = "self") -> tuple[str, str] | None:
    """A task's state letter and the first word of its /proc syscall file."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/task/{tid}/syscall") as fh:
            first = fh.read().split()[0]
    except (OSError, IndexError):
        return None
    return state, first


_CALIBRATION_BOUND = 2.0     # seconds for a helper thread to be seen asleep on a lock
_futex_seen: list[int | None] = []     # once per process: the number, or None (unknown)


def _futex_as_proc_shows() -> int | None:
    """The number /proc shows for a thread asleep on a Python lock. Natively, and for a
    compat (i386) task, it is the ABI's futex; under qemu-user the thread really sleeps in
    the host's futex, so /proc shows the host's number (202 on x86_64), not the emulated
    ABI's (98 on aarch64): found by watching a helper thread wait on a lock."""
    from kit.adapter.arch import ARCH, syscall_number

    if ARCH in ("x86_64", "i386"):
        # no emulator runs x86 here: the table's number, without the helper's cost
        return syscall_number("futex")
    if _futex_seen:
        return _futex_seen[0]

    lock = threading.Lock()
    lock.acquire()
    tids: list[int] = []

    def wait() -> None:
        tids.append(threading.get_native_id())
        if lock.acquire(timeout=_CALIBRATION_BOUND):
            lock.release()

    helper = threading.Thread(target=wait, name="kit-futex-calibration", daemon=True)
    helper.start()
    seen = None
    deadline = time.monotonic() + _CALIBRATION_BOUND / 2
    while seen is None and time.monotonic() < deadline:
        shown = _task_syscall(tids[0]) if tids else None
        if shown is not None and shown[0] == "S" and shown[1].isdigit():
            seen = int(shown[1])
        else:
            time.sleep(0.001)
    lock.release()
    helper.join(_CALIBRATION_BOUND)
    _futex_seen.append(seen if seen is not None else syscall_number("futex"))
    return _futex_seen[0]


def blocked_in_syscall(tid: int, pid: int | str = "self") -> bool | None:
    """Whether thread `tid` of process `pid` sleeps inside a system call other than futex
    (where a Python thread waits for the GIL or a lock: not the call under test).

    None when /proc cannot tell (no per-task syscall file, e.g. on some sandboxes).
    """
    shown = _task_syscall(tid, pid)
    if shown is None:
        return None
    state, first = shown
    if state not in ("S", "D") or not first.lstrip("-").isdigit():
        return False
    number = int(first)
    return number >= 0 and number != _futex_as_proc_shows()


def run_queue_wait(tid: int) -> float | None:
    """Seconds thread `tid` of this process has spent runnable but waiting for a CPU, from
    /proc's schedstat (its second field, run_delay in ns). None where the kernel does not
    keep it (no CONFIG_SCHED_INFO, a sandbox without the file)."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None
