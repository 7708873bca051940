"""Machine-wide limits: the sysctls a behaviour declared in `machine_wide:` (read, and set
while kit.engine.machine_wide holds them for it), and a child process moved to a uid of
its own, so that a per-user count starts at zero."""

from __future__ import annotations

import os

from kit.adapter.libc import Result
from kit.confinement import SYSCTLS, check_sysctl
from kit.registry import operation

_IMPORT_PID = os.getpid()

# Set by kit.engine.machine_wide while it holds these sysctls (journalled, to be restored)
# for the running behaviour; forked in_child children inherit it.
armed: frozenset[str] = frozenset()


def _read(path: str) -> int:
    with open(path) as fh:
        return int(fh.read().split()[0])


def _errno(exc: OSError) -> str:
    import errno

    return errno.errorcode.get(exc.errno or 0, "EIO")


@operation(family="process", sysctl="str")
def sysctl_get(sysctl: str) -> Result:
    """The value of `sysctl` (one of kit.confinement.SYSCTLS), as an integer."""
    if sysctl not in SYSCTLS:
        check_sysctl(sysctl, ())
    try:
        return Result(ret=0, value=_read(SYSCTLS[sysctl]))
    except OSError as exc:
        return Result(ret=-1, errno=_errno(exc))


@operation(family="process", sysctl="str", value="int")
def sysctl_set(sysctl: str, value: int) -> Result:
    """Set `sysctl` to `value`; value is the old one. Only a sysctl the behaviour
    declares in `machine_wide:`, run with --allow-machine-wide: the engine journals the
    original first and restores it afterwards, even after a crash."""
    path = check_sysctl(sysctl, armed)
    try:
        old = _read(path)
        with open(path, "w") as fh:
            fh.write(f"{int(value)}\n")
    except OSError as exc:
        return Result(ret=-1, errno=_errno(exc))
    return Result(ret=0, value=old)


def _uids_in_use() -> set[int]:
    uids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        uids.update(int(u) for u in line.split()[1:])
                        break
        except OSError:
            continue
    return uids


# Far above any uid a distribution hands out, below the 16-bit-overflow and -1 values.
_FIRST_SPARE_UID = 0x7FFF0000


@operation(family="process")
def setuid_unused() -> Result:
    """Move the calling process (a forked child: an in_child step) to a uid and gid that
    no process uses, so per-user counts (epoll watches) start at 0 there. Needs
    CAP_SETUID and CAP_SETGID; value is the uid."""
    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="setuid_unused only runs in a forked child (in_child)")
    used = _uids_in_use()
    uid = next(u for u in range(_FIRST_SPARE_UID, _FIRST_SPARE_UID + 4096) if u not in used)
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        return Result(ret=-1, errno=_errno(exc))
    return Result(ret=0, value=uid)
