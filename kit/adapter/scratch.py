"""The scratch directory: the only place a spec's files live (kit.confinement).

The process that forks a behaviour's checker makes one directory per behaviour
(behaviour_root) and removes it when the checker is gone, however it ended (a kill
included); each example gets a fresh subdirectory of it (example), removed at the end
of the example, so no example sees another's files. The subdirectory is made on first
use only (most behaviours never touch a file, and a mkdir and rmtree per example would
cost more than Hypothesis itself); its name is fixed when the example starts, so an
`in_child` child that makes it and the parent that removes it agree on it. A spec names
files in it as `scratch:NAME`; open_beneath resolves NAME beneath the directory and
nowhere else.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kit.adapter.arch import syscall_number
from kit.adapter.libc import libc
from kit.confinement import Refused

_root: str | None = None       # the behaviour's directory (set before the checker forks)
_UNMADE: Any = object()         # an example whose directory mkdtemp makes on first use
_current: Any = None    # the running example's directory
_making = threading.Lock()
_examples = itertools.count()

# include/uapi/linux/openat2.h
RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x04, 0x08
_TMPFILE_BIT = getattr(os, "O_TMPFILE", 0o20200000) & ~os.O_DIRECTORY


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@contextmanager
def behaviour_root() -> Iterator[str]:
    """A directory for one behaviour's examples, removed on the way out."""
    global _root
    previous, _root = _root, tempfile.mkdtemp(prefix="kit-scratch-")
    try:
        yield _root
    finally:
        shutil.rmtree(_root, ignore_errors=True)
        _root = previous


@contextmanager
def example() -> Iterator[str | None]:
    """A fresh, empty scratch directory for one example of a behaviour (its threads and
    in_child children share it), removed at the end even when the example fails. Made on
    first use only: most behaviours never name a file."""
    global _current
    if _root is not None:
        path = os.path.join(_root, f"example-{os.getpid()}-{next(_examples)}")
    else:  # no checker process around it (--kit-in-process, tests): mkdtemp on first use
        path = _UNMADE
    previous, _current = _current, path
    try:
        yield None if path is _UNMADE else path
    finally:
        if _current is not _UNMADE and os.path.lexists(_current):
            shutil.rmtree(_current, ignore_errors=True)
        _current = previous


def current() -> str | None:
    """The running example's directory, made now if it does not exist yet (None: no
    example is running)."""
    global _current
    if _current is None:
        return None
    with _making:   # an example's threads may ask at once
        try:
            if _current is _UNMADE:
                # a name of mkdtemp's choosing: a name known in advance could be planted
                _current = tempfile.mkdtemp(prefix="kit-scratch-")
            else:
                os.mkdir(_current, 0o700)
        except FileExistsError:
            pass  # made earlier; only the kit's own processes can write in _root (0700)
        except OSError as exc:  # the kit's failure, not the kernel's answer to the spec
            raise RuntimeError(f"cannot make the scratch directory: {exc}") from exc
    return _current


def before_fork() -> None:
    """Make a directory that mkdtemp would name only on first use now, so that an in_child
    process and its parent use the same one."""
    if _current is _UNMADE:
        current()


def open_beneath(name: str, flags: int, mode: int = 0o600) -> int:
    """open(2) of NAME beneath the scratch directory: the descriptor, or OSError with the
    kernel's errno; Refused when NAME would leave the directory (`..`, or a symbolic link,
    which no operation creates there: someone else planted it)."""
    where = current()
    if where is None:
        raise Refused("no scratch directory: `scratch:` paths exist only while a behaviour runs")
    directory = os.open(where, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _openat2(directory, name, flags, mode)
    finally:
        os.close(directory)


def _openat2(directory: int, name: str, flags: int, mode: int) -> int:
    number = syscall_number("openat2")
    if number is not None:
        how = _OpenHow(flags, mode if flags & (os.O_CREAT | _TMPFILE_BIT) else 0,
                       RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
        ctypes.set_errno(0)
        fd = libc.syscall(ctypes.c_long(number), ctypes.c_long(directory),
                          ctypes.c_char_p((name or ".").encode()), ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        _refuse_escape(err, name)
        # Missing (ENOSYS), filtered (EPERM under some seccomp profiles) or stricter about
        # flag bits than open(2) (EINVAL): the walk gives open(2)'s own answer.
        if err not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            raise OSError(err, os.strerror(err))
    return _walk_nofollow(directory, name, flags, mode)


def _walk_nofollow(directory: int, name: str, flags: int, mode: int) -> int:
    """Without openat2(2) (before Linux 5.6, some sandboxes): one component at a time,
    none of them followed if it is a symbolic link."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    here = os.dup(directory)
    try:
        for part in parts[:-1]:
            try:
                step = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                               dir_fd=here)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and os.path.islink(
                        os.path.join(f"/proc/self/fd/{here}", part)):
                    _refuse_escape(errno.ELOOP, name)
                raise
            os.close(here)
            here = step
        try:
            return os.open(parts[-1] if parts else ".", flags | os.O_NOFOLLOW, mode,
                           dir_fd=here)
        except OSError as exc:
            _refuse_escape(exc.errno, name)
            raise
    finally:
        os.close(here)


def _refuse_escape(err: int | None, name: str) -> None:
    # EXDEV: RESOLVE_BENEATH saw the path leave; ELOOP: a symbolic link was not followed
    if err in (errno.EXDEV, errno.ELOOP):
        raise Refused(f"scratch:{name} leads out of the scratch directory or through a "
                      f"symbolic link, which specs never follow")

