"""Behaviours that change a sysctl (`machine_wide: [fs.file-max]`): run one at a time,
with every original value journalled before it changes and restored afterwards, even
after a crash.

Only a global sysctl can provoke some documented errors (ENFILE needs fs.file-max
reached; ENOSPC from epoll_ctl needs fs.epoll.max_user_watches, millions by default).
Such behaviours run only where the machine is the kit's own (`--allow-machine-wide`, the
QEMU matrix targets); elsewhere they are not applicable, with that reason.

While one runs, the checker holds the exclusive lock of each sysctl it names
(kit.engine.exclusive), writes the current value to a journal file in the lock directory
(a directory of the running user's own that nobody else may write), and only then lets
`sysctl_set` write it. A finally restores the values and removes the journal. A checker
killed by SIGKILL cannot run its finally: its parent restores from the journal as soon as
the forked check ends, and every run restores, at its start, any journal left by a run
that was killed itself (restore_leftovers), taking the sysctl's lock first so that a
journal of a behaviour still running elsewhere is left alone.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

from kit.adapter import sysctl
from kit.confinement import SYSCTLS
from kit.engine import exclusive

JOURNAL_PREFIX = "journal-"
# With machine-wide behaviours allowed, every behaviour holds MACHINE shared and a machine-
# wide one holds it alone: while fs.epoll.max_user_watches is 3, no other behaviour of
# any worker is halfway through its epoll_ctl calls. A waiter for MACHINE alone holds
# TURNSTILE, which every behaviour passes through first, so that behaviours starting one
# after another on the other workers cannot keep it waiting for ever.
MACHINE, TURNSTILE = "machine_wide", "machine_wide_turnstile"


def lock_name(name: str) -> str:
    return "sysctl_" + name.replace(".", "_").replace("-", "_")


def _journal(name: str) -> str:
    return JOURNAL_PREFIX + name


def _dir() -> tuple[int, str]:
    path = exclusive.lock_dir()
    return exclusive._open_dir(path), path


def _write_value(name: str, value: int) -> None:
    with open(SYSCTLS[name], "w") as fh:
        fh.write(f"{value}\n")


def _read_value(name: str) -> int:
    with open(SYSCTLS[name]) as fh:
        return int(fh.read().split()[0])


def _write_journal(dir_fd: int, name: str, value: int) -> None:
    """Durably, before the sysctl changes: a temporary file renamed over the journal."""
    tmp = _journal(name) + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        os.write(fd, f"{value}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, _journal(name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def _restore_journal(dir_fd: int, name: str) -> int | None:
    """Put back the value journalled for `name` and remove the journal: the value, or None
    when there was no journal. A journal that is not a plain integer in a regular file of
    ours is refused (exclusive.Unsafe), never written to the sysctl."""
    try:
        fd = os.open(_journal(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise exclusive.Unsafe(f"journal of {name} refused: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if info.st_uid != os.getuid() or not text.isdigit():
        raise exclusive.Unsafe(f"journal of {name} refused: owned by uid {info.st_uid}, "
                               f"holding {text[:20]!r} (expected this user's, an integer)")
    value = int(text)
    _write_value(name, value)
    os.unlink(_journal(name), dir_fd=dir_fd)
    return value


@contextmanager
def fenced(behaviour, allowed: bool):
    """Keep machine-wide behaviours apart from all others, when they may run at all."""
    if not allowed:
        yield
    elif behaviour.machine_wide:
        with exclusive.held([TURNSTILE]), exclusive.held([MACHINE]):
            yield
    else:
        with exclusive.held([TURNSTILE]):
            pass
        with exclusive.held([MACHINE], shared=True):
            yield


@contextmanager
def held(names):
    """Hold the named sysctls for one behaviour: locked, journalled, `sysctl_set` allowed
    on them; restored and unjournalled afterwards, whatever happened."""
    names = sorted(set(names))
    if not names:
        yield
        return
    with exclusive.held([lock_name(n) for n in names]):
        dir_fd, _path = _dir()
        try:
            with ExitStack() as restores:
                for name in names:
                    _restore_journal(dir_fd, name)     # a killed run's, under our lock now
                    _write_journal(dir_fd, name, _read_value(name))
                    restores.callback(_restore_journal, dir_fd, name)
                sysctl.arm(names)
                try:
                    yield
                finally:
                    sysctl.disarm()
        finally:
            os.close(dir_fd)


def restore_leftovers(names=None) -> list[tuple[str, int]]:
    """Restore every journal left behind by a checker or run that was killed: (sysctl,
    value restored) for each. A sysctl whose lock is held (a behaviour using it right now,
    in another worker or run) is left to its holder."""
    restored = []
    try:
        dir_fd, _path = _dir()
    except (exclusive.Unsafe, OSError):
        return restored
    try:
        for name in sorted(SYSCTLS if names is None else names):
            if not os.path.exists(os.path.join(f"/proc/self/fd/{dir_fd}", _journal(name))):
                continue
            try:
                with exclusive.held([lock_name(name)]):
                    value = _restore_journal(dir_fd, name)
            except exclusive.Busy:
                continue
            if value is not None:
                restored.append((name, value))
    finally:
        os.close(dir_fd)
    return restored
