"""A mount that never reaches the machine: a private mount namespace of a forked child, and
a tmpfs mounted in it on a directory beneath the behaviour's scratch directory, so that
/proc/self/mounts changes (proc(5): the file is pollable).

The rules (kit.confinement's docstring): `mount_namespace_private` runs only in a forked
child (an `in_child` step), never in the process that imported the kit; `mount_tmpfs`
runs only in the process that made such a namespace, while it is still in it, and only
on a directory beneath the scratch directory. The namespace, and the mount with it, die
with the child.
"""

from __future__ import annotations

import ctypes
import os

from kit.adapter import scratch
from kit.adapter.libc import Result, call, from_oserror, libc
from kit.confinement import Refused, check_mount_point
from kit.registry import operation

# include/uapi/linux/sched.h and include/uapi/linux/mount.h
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000

libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]

_IMPORT_PID = os.getpid()
# (pid, namespace inode) of the private mount namespace this process made, if any
_private: tuple[int, int] | None = None


def _namespace() -> int:
    return os.stat("/proc/self/ns/mnt").st_ino


@operation(family="mount")
def mount_namespace_private() -> Result:
    """unshare(2) CLONE_NEWNS, then every mount in the new namespace made private
    (MS_REC | MS_PRIVATE on /), so nothing mounted in it propagates back to the machine.
    Only in a forked child (an in_child step): refused in the kit's own process. Needs
    CAP_SYS_ADMIN. 0 on success."""
    global _private
    if os.getpid() == _IMPORT_PID:
        raise Refused("mount_namespace_private only runs in a forked child (in_child): the "
                      "kit's own process keeps the machine's mount namespace")
    res = call(libc.unshare, CLONE_NEWNS)
    if not res.ok:
        return res
    # From here on this process is in a namespace of its own: whatever fails next, a mount
    # is refused until propagation to the machine's namespace is off.
    res = call(libc.mount, None, b"/", None, MS_REC | MS_PRIVATE, None)
    if res.ok:
        _private = (os.getpid(), _namespace())
    return res


def _in_private_namespace() -> bool:
    return _private is not None and _private == (os.getpid(), _namespace())


@operation(family="mount", path="str")
def make_directory(path: str) -> Result:
    """mkdir(2) of `scratch:NAME` (one component, mode 0700) in the scratch directory,
    e.g. a mount point. 0 on success."""
    name = check_mount_point(path)
    try:
        parent = scratch.open_beneath("", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return from_oserror(exc)
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except OSError as exc:
        return from_oserror(exc)
    finally:
        os.close(parent)
    return Result(ret=0)


@operation(family="mount", path="str")
def mount_tmpfs(path: str) -> Result:
    """mount(2) a small tmpfs (nosuid, nodev, noexec) on the directory `scratch:NAME`.
    Only in the process that made a private mount namespace with
    mount_namespace_private, while it is in it: refused anywhere else, so the mount can
    never reach the machine. 0 on success."""
    if not _in_private_namespace():
        raise Refused("mount_tmpfs only runs in a private mount namespace this process made "
                      "(mount_namespace_private in an in_child step): a mount must not "
                      "reach the machine")
    name = check_mount_point(path)
    try:
        target = scratch.open_beneath(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return from_oserror(exc)
    try:
        # The magic link names exactly the directory opened beneath the scratch directory.
        return call(libc.mount, b"tmpfs", f"/proc/self/fd/{target}".encode(), b"tmpfs",
                    MS_NOSUID | MS_NODEV | MS_NOEXEC, ctypes.c_char_p(b"size=64k"))
    finally:
        os.close(target)
