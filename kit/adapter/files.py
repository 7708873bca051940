"""Files that are not pollable, for the cases where epoll_ctl(2) refuses a target:
a regular file (a fresh, already unlinked temporary file), a file in the behaviour's
scratch directory (`scratch:NAME`) and the kernel interfaces a spec may open (/dev/null,
/, /proc/self/fdinfo/N, ...). What a path may reach is kit.confinement's decision."""

from __future__ import annotations

import errno
import os
import tempfile

from kit.adapter import scratch
from kit.adapter.libc import Result, from_oserror
from kit.confinement import Refused, check_path
from kit.registry import constants, operation

constants(O_DIRECTORY=os.O_DIRECTORY, O_PATH=getattr(os, "O_PATH", 0o10000000),
          O_CREAT=os.O_CREAT, O_TRUNC=os.O_TRUNC, O_APPEND=os.O_APPEND, O_EXCL=os.O_EXCL,
          O_NOFOLLOW=os.O_NOFOLLOW, O_TMPFILE=getattr(os, "O_TMPFILE", 0o20200000))


@operation(family="file", flags="flags")
def open_temp_file(flags: int = 0) -> Result:
    """A new regular file in the scratch directory, opened O_RDWR plus `flags` and
    unlinked at once (it disappears with its last descriptor); value is the fd."""
    try:
        fd, path = tempfile.mkstemp(prefix="kit-", dir=scratch.current())
    except OSError as exc:
        return from_oserror(exc)
    try:
        os.unlink(path)
        if flags:
            reopened = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | flags)
            os.close(fd)
            fd = reopened
    except OSError as exc:
        os.close(fd)
        return from_oserror(exc)
    return Result(ret=fd, value=fd, created_fds=[fd])


@operation(family="file", path="str", flags="flags")
def open_path(path: str, flags: int = os.O_RDONLY) -> Result:
    """open(2) of `scratch:NAME` (a file in the behaviour's scratch directory; O_CREAT
    makes it 0600) or of an allowed kernel interface (/dev/null, /, /proc/self/fdinfo/N,
    /proc/sys/fs/epoll/..., read only but for /dev/null, /dev/zero, /dev/full) with
    `flags`; value is the fd. Any other path is refused: a spec error."""
    place = check_path(path, flags)
    try:
        fd = scratch.open_beneath(place.path, flags) if place.scratch else \
            _open_interface(place.path, flags)
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=fd, value=fd, created_fds=[fd])


def _open_interface(path: str, flags: int) -> int:
    """open(2) without following a final symbolic link; the descriptor must then be the
    file asked for (its /proc/self/fd link names `path`), else it is closed and refused."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{path!r} is a symbolic link here, which specs never follow") \
                from None
        raise
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        expected = _canonical(path)
    except OSError as exc:
        os.close(fd)
        raise Refused(f"{path!r}: cannot tell which file was opened ({exc})") from None
    if opened != expected:
        os.close(fd)
        raise Refused(f"{path!r} led to {opened!r}, not to the kernel interface itself")
    return fd


def _canonical(path: str) -> str:
    """`path` as /proc/self/fd names it: /proc/self and /proc/thread-self resolved."""
    for link in ("/proc/thread-self", "/proc/self"):
        if path == link or path.startswith(link + "/"):
            return f"/proc/{os.readlink(link)}{path[len(link):]}"
    return path
