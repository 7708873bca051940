"""The report directory: checked before anything runs, and locked against a second run.

A run names its report directory up front; a mistake there (a file, a read-only or
unwritable place) is the user's, found before any behaviour runs, in one line. While a
run (or `kit report`, `kit bench`) writes into a directory it holds an flock on
DIR/.kit.lock; a second one is refused with the holder's pid and command, and touches
nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

LOCK_NAME = ".kit.lock"
_HELD: dict[str, list] = {}   # realpath -> [fd, count]: the locks this process holds


class ReportDirError(Exception):
    """The report directory cannot be used (the message is one line, for the user)."""


def check_report_dir(path: Path | str) -> Path:
    """The directory, created if missing; ReportDirError unless it is a writable directory."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ReportDirError(f"report directory {directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportDirError(f"cannot create report directory {directory}: "
                             f"{exc.strerror or exc}") from None
    try:  # access(2) is not enough: root passes it on a read-only bind mount's directory
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".kit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReportDirError(f"report directory {directory} is not writable: "
                             f"{exc.strerror or exc}") from None
    return directory


def _out_of_the_way(fd: int, at_least: int = 700) -> int:
    """Move a descriptor held for the whole run above the ones specs open, so a run with a
    report directory and a replay without one number their descriptors alike (a trace
    says read_u64(fd=12) in both) and an EMFILE experiment finds its usual free slots."""
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, at_least)
    except OSError:   # a soft RLIMIT_NOFILE below AT_LEAST: stay where it is
        return fd
    os.close(fd)
    return high


class ReportLock:
    """An exclusive flock on DIR/.kit.lock, re-entrant within this process (the CLI takes
    it before `kit run --bench` measures; the plugin, in the same process, takes it again)."""

    def __init__(self, directory: Path, command: str | None = None):
        self.directory = Path(directory)
        self.key = os.path.realpath(self.directory)
        self.command = command or " ".join(["kit" if "kit" in sys.argv[0] else
                                            Path(sys.argv[0]).name, *sys.argv[1:2]])
        self.acquired = False

    def acquire(self) -> ReportLock:
        held = _HELD.get(self.key)
        if held:
            held[1] += 1
            self.acquired = True
            return self
        path = self.directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ReportDirError(f"cannot open the lock file {path}: "
                                 f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                # The filesystem cannot lock (some 9p and NFS mounts, as a VM target's
                # share): the report is still written, without the guard.
                print(f"kit: warning: cannot lock {path} ({exc.strerror or exc}); "
                      "a second run into this directory would not be refused",
                      file=sys.stderr)
            else:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
                os.close(fd)
                raise ReportDirError(f"report directory {self.directory} is in use by "
                                     f"{holder or 'another run'}; wait for it or choose "
                                     "another directory") from None
        fd = _out_of_the_way(fd)
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} ({self.command}), since {started}\n".encode(), 0)
        _HELD[self.key] = [fd, 1]
        self.acquired = True
        return self

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        held = _HELD.get(self.key)
        if not held:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self.key]
            os.close(held[0])   # closing the last descriptor drops the flock

    def __enter__(self) -> ReportLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
