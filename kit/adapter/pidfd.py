"""pidfd_open(2) on the behaviour's own children only: a child that waits until the spec
lets it exit, a PID file descriptor for it, and waitpid(2) to reap it.

A pid is a name any process may carry, so `pidfd_open` takes only the pid of a child
that `spawn_child` forked in this process and that has not been reaped yet (a reaped
pid may already name someone else's process). Children still running when the example
ends are released, waited for (bounded) and reaped by `reap_children`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from kit.adapter.arch import syscall_number
from kit.adapter.libc import Result, call, libc, syscall
from kit.adapter.process import _die_with_parent, _kill, _wait_exit  # the checker's own
from kit.confinement import Refused
from kit.registry import constants, operation

# include/uapi/linux/pidfd.h: PIDFD_NONBLOCK is O_NONBLOCK.
constants(PIDFD_NONBLOCK=os.O_NONBLOCK)

REAP_BOUND = 5.0        # seconds a released child gets to exit before it is killed

libc.waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]

# pid -> the write end of its release pipe, for the children this process spawned and
# has not reaped
_children: dict[int, int] = {}


def _wait_for_release(read_end: int, status: int, parent: int) -> None:
    """The child's whole life: sleep until the release pipe's last writer closes it."""
    try:
        _die_with_parent(parent)
        # Keep nothing of the parent's but the pipe: an inherited copy of another
        # child's release end, or of a spec's descriptor, would change what they see.
        os.closerange(0, read_end)
        os.closerange(read_end + 1, 1 << 16)
        while os.read(read_end, 1):
            pass
    finally:
        os._exit(status)


@operation(family="process", status="int")
def spawn_child(status: int = 0) -> Result:
    """fork(2) a child that only waits: value is {pid, release}. Closing `release` (the
    only write end of a pipe the child reads) lets it exit with `status`. It is killed
    when the thread that spawned it ends (PR_SET_PDEATHSIG), so spawn it from the main
    steps or an in_child step, not from an in_thread one."""
    if not 0 <= status <= 255:
        return Result(ret=-1, errno="EINVAL", value=f"exit status {status} is not 0..255")
    read_end, release = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _wait_for_release(read_end, status, parent)
    os.close(read_end)
    _children[pid] = release
    return Result(ret=pid, value={"pid": pid, "release": release}, created_fds=[release])


def _own_child(pid: int) -> None:
    if pid not in _children:
        raise Refused(f"pid {pid} is not a child this behaviour spawned (spawn_child) and "
                      f"has not reaped: a spec may not reach other processes")


@operation(family="process", pid="int", flags="flags")
def pidfd_open(pid: int, flags: int = 0) -> Result:
    """pidfd_open(2) (raw system call) of a child from `spawn_child`, not yet reaped;
    `flags` PIDFD_NONBLOCK. The new descriptor."""
    _own_child(pid)
    number = syscall_number("pidfd_open")
    if number is None:
        return Result(ret=-1, errno="ENOSYS", value="no pidfd_open on this architecture")
    res = syscall(number, pid, flags)
    if res.ok:
        res.created_fds.append(res.ret)
    return res


def _status(raw: int) -> dict:
    if os.WIFSIGNALED(raw):
        return {"exited": False, "status": None, "signal": signal.Signals(os.WTERMSIG(raw)).name}
    return {"exited": True, "status": os.WEXITSTATUS(raw), "signal": None}


@operation(family="process", blocking=True, pid="int", nohang="bool")
def child_wait(pid: int, nohang: bool = False) -> Result:
    """waitpid(2) for a child from `spawn_child` (WNOHANG with `nohang: true`): value is
    {exited, status, signal} once it is reaped (after which its pid is no longer the
    spec's), null while it runs (WNOHANG, return 0)."""
    _own_child(pid)
    raw = ctypes.c_int(0)
    res = call(libc.waitpid, pid, ctypes.byref(raw), os.WNOHANG if nohang else 0)
    if res.ok and res.ret == pid:
        _children.pop(pid, None)
        res.value = _status(raw.value)
    elif res.ok:
        res.value = None
    return res


def reap_children() -> None:
    """Wait for (bounded) and reap every child still registered: the end of an example,
    whatever the spec did. Its release end is one of the spec's descriptors, closed with
    them before this runs; a child that does not exit in time is killed."""
    for pid in list(_children):
        try:
            if _wait_exit(pid, time.monotonic() + REAP_BOUND) is None:
                _kill(pid)
        except ChildProcessError:
            pass                    # reaped already (child_wait)
        _children.pop(pid, None)
