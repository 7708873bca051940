"""Files that are not pollable, for the cases where epoll_ctl(2) refuses a target:
a regular file (a fresh, already unlinked temporary file) and any path, such as
/dev/null or a directory, opened with open(2)."""

from __future__ import annotations

import os
import tempfile

from kit.adapter.libc import Result, from_oserror
from kit.registry import constants, operation

constants(O_DIRECTORY=os.O_DIRECTORY, O_PATH=getattr(os, "O_PATH", 0o10000000),
          O_CREAT=os.O_CREAT, O_TRUNC=os.O_TRUNC, O_APPEND=os.O_APPEND)


@operation(family="file", flags="flags")
def open_temp_file(flags: int = 0) -> Result:
    """A new regular file in the temporary directory, opened O_RDWR plus `flags` and
    unlinked at once (it disappears with its last descriptor); value is the fd."""
    try:
        fd, path = tempfile.mkstemp(prefix="kit-")
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
    """open(2) of `path` with `flags` (no O_CREAT mode: 0600 if O_CREAT is given);
    value is the fd."""
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        return from_oserror(exc)
    return Result(ret=fd, value=fd, created_fds=[fd])
