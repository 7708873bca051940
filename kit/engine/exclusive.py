"""Machine-wide state that behaviours must not share at the same time.

A few behaviours change or depend on something every process on the machine sees: setting
the realtime clock cancels *every* cancel-on-set timer (timerfd_create(2)), so two such
behaviours on two pytest-xdist workers would spoil each other (a read fails with ECANCELED
before it blocks). A behaviour names the state in `exclusive: [realtime_clock]`; the
checker takes an flock(2) on a lock file per name for the whole behaviour, so behaviours
naming the same state run one at a time, whichever worker or run of this user they belong
to. The lock dies with the process that holds it, so a checker killed at its limit cannot
leave it held.

The locks live in a directory of the running user's own (under $XDG_RUNTIME_DIR, else
kit-locks-UID in the temporary directory), checked before every use: a real directory, not
a symlink, owned by this user, writable by nobody else. A directory or symlink another user
planted there is refused, so nobody can make a root run create files elsewhere or hold its
locks. Lock files are opened without following symlinks.

Root's directory (kit-locks-0, always in the temporary directory) is readable by all: an unprivileged run opens root's lock
file read-only (flock needs no more) when root made it, so a run as nobody whose
cancel-on-set timers depend on the clock still waits for a root run that sets it. Where
root has no such file, the user's own lock is taken.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from contextlib import ExitStack, contextmanager

WAIT = 30.0          # seconds: holders are single behaviours of a second or so
POLL = 0.01


class Busy(Exception):
    """The lock stayed taken for WAIT seconds."""


class Unsafe(Exception):
    """The lock directory or a lock file is not this user's own: refused."""


def _base() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        try:
            info = os.lstat(runtime)
        except OSError:
            info = None
        # systemd's /run/user/UID: ours and private; anything else falls back to /tmp
        if info and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and \
                not info.st_mode & 0o022:
            return runtime
    return tempfile.gettempdir()


def _roots_dir() -> str:
    # never under root's $XDG_RUNTIME_DIR: unprivileged runs must find it where they look
    return os.path.join(tempfile.gettempdir(), "kit-locks-0")


def lock_dir() -> str:
    uid = os.getuid()
    path = _roots_dir() if uid == 0 else os.path.join(_base(), f"kit-locks-{uid}")
    try:
        # root's may be read by all: unprivileged runs share its locks (see above)
        os.mkdir(path, 0o755 if uid == 0 else 0o700)
    except FileExistsError:
        pass
    return path


def _open_dir(path: str) -> int:
    """The lock directory, opened without following a symlink and checked as ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Unsafe(f"lock directory {path} refused: {exc.strerror} (it must be a real "
                     f"directory, not a symlink)") from None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(fd)
        raise Unsafe(f"lock directory {path} refused: owned by uid {info.st_uid} with mode "
                     f"{stat.S_IMODE(info.st_mode):04o}; it must be this user's (uid "
                     f"{os.getuid()}), writable by nobody else: remove it to let the kit make it")
    if os.getuid() == 0 and stat.S_IMODE(info.st_mode) != 0o755:
        os.fchmod(fd, 0o755)   # one an older kit made 0700: open it to unprivileged runs
    return fd


def _open_lock(name: str, dir_fd: int, where: str) -> int:
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise Unsafe(f"lock file {where} refused: {exc.strerror} (a symlink is never "
                     f"followed)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unsafe(f"lock file {where} refused: not a regular file")
    return fd


def _roots_lock(name: str) -> int | None:
    """Root's lock file for `name`, opened read-only, if this is not root and root made it
    in a directory only root may write; None otherwise."""
    if os.getuid() == 0:
        return None
    try:
        dir_fd = os.open(_roots_dir(),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(dir_fd)
        if info.st_uid != 0 or info.st_mode & 0o022:
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0:
        os.close(fd)
        return None
    return fd


def prepare(names) -> None:
    """As root: make the lock files now, so an unprivileged run started before root's
    first use of a lock shares it (tests/test_unprivileged.py drops root after this)."""
    if os.getuid() != 0:
        return
    path = lock_dir()
    dir_fd = _open_dir(path)
    try:
        for name in set(names):
            os.close(_open_lock(name, dir_fd, os.path.join(path, name)))
    finally:
        os.close(dir_fd)


@contextmanager
def _one(name: str, wait: float, mode: int = fcntl.LOCK_EX):
    fd = _roots_lock(name)
    path = lock_dir() if fd is None else _roots_dir()
    if fd is None:
        dir_fd = _open_dir(path)
        try:
            fd = _open_lock(name, dir_fd, os.path.join(path, name))
        finally:
            os.close(dir_fd)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{name}: {path}/{name} stayed locked for {wait:g} s "
                               f"(another behaviour or run that changes it is still "
                               f"going)") from None
                time.sleep(POLL)
        yield
    finally:
        os.close(fd)        # releases the lock


@contextmanager
def held(names, wait: float | None = None, shared: bool = False):
    """Hold every named lock (in sorted order, so two holders never deadlock), waiting
    up to `wait` seconds (default WAIT) for each; `shared`: with others that hold it
    shared too (flock's LOCK_SH), never with one that holds it alone."""
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(_one(name, WAIT if wait is None else wait, mode))
        yield
