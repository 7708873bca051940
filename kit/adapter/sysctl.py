"""Machine-wide limits: the sysctls a behaviour declared in `machine_wide:` (read, and set
while kit.engine.machine_wide holds them for it), and a child process moved to a real uid
of its own, so that a per-user count starts at zero."""

from __future__ import annotations

import os

from kit.adapter.libc import Result
from kit.confinement import SYSCTLS, check_sysctl
from kit.registry import operation

_IMPORT_PID = os.getpid()

# Set by kit.engine.machine_wide (arm / disarm) while it holds these sysctls, journalled,
# for the running behaviour: each one's /proc/sys file, opened read-write beforehand, so
# that a child that has dropped CAP_SYS_ADMIN can still put fs.file-max back after setting
# it to 0 (opening the file again would fail with ENFILE). Forked in_child children
# inherit the descriptors; they are the kit's own, so no step can name them.
armed: dict[str, int] = {}


def arm(names) -> None:
    disarm()
    for name in names:
        armed[name] = os.open(check_sysctl(name, SYSCTLS), os.O_RDWR | os.O_CLOEXEC)


def disarm() -> None:
    while armed:
        os.close(armed.popitem()[1])


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
    check_sysctl(sysctl, armed)
    fd = armed[sysctl]
    try:
        old = int(os.pread(fd, 64, 0).split()[0])
        os.pwrite(fd, f"{int(value)}\n".encode(), 0)
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
def real_uid_unused() -> Result:
    """Give the calling process (a forked child: an in_child step) a real uid and gid that
    no process uses, keeping its effective and saved ids (root stays root, so it can still
    put a sysctl back): per-real-user counts such as epoll watches start at 0 there, for
    instances it creates from now on. Needs CAP_SETUID and CAP_SETGID; value is the uid.
    Called again, it moves to another unused uid."""
    if os.getpid() == _IMPORT_PID:
        return Result(ret=-1, errno="EPERM",
                      value="real_uid_unused only runs in a forked child (in_child)")
    used = _uids_in_use()
    uid = next(u for u in range(_FIRST_SPARE_UID, _FIRST_SPARE_UID + 4096) if u not in used)
    try:
        os.setresgid(uid, -1, -1)
        os.setresuid(uid, -1, -1)
    except OSError as exc:
        return Result(ret=-1, errno=_errno(exc))
    return Result(ret=0, value=uid)
