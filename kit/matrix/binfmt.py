"""qemu-user through binfmt_misc: a foreign userland's programs run under Debian's qemu.

Debian's qemu-user-static ships the registration of each architecture it emulates
(/usr/lib/binfmt.d/qemu-ARCH.conf: the magic and mask of the architecture's ELF header and
the interpreter). The kit registers that line under a name of its own (`kit-qemu-ARCH`) with
the F flag, so the kernel opens the interpreter at registration and a chroot needs no copy
of it, and removes it afterwards; binfmt_misc is mounted for the time it is needed if it was
not. A registration of the machine's own (binfmt-support's `qemu-aarch64`, systemd-binfmt's)
that is enabled and has F is used as it is and never touched. Targets of one `kit matrix`
run in threads, and two kit processes may run qemu-user targets at once: each user holds a
shared lock on the entry for its whole run, and the last one out removes it.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from kit.engine import exclusive

BINFMT = Path("/proc/sys/fs/binfmt_misc")
CONFIG = Path("/usr/lib/binfmt.d")          # qemu-user-static's registrations
PREFIX = "kit-"

# Flocks in the kit's lock directory (kit.engine.exclusive): every target running under
# qemu-user holds USERS and its entry's lock shared; GUARD is held alone while an entry or
# the mount is checked, made or removed. Whoever leaves last, in whichever thread or kit
# process, finds the entry's lock free and removes it.
USERS = "binfmt-users"
GUARD = "binfmt"
_MOUNTED_BY_US = False


class BinfmtError(Exception):
    """qemu-user cannot be registered here; the message says why."""


def config_line(qemu: str) -> str:
    """qemu-user-static's registration line for `qemu` (aarch64, s390x)."""
    path = CONFIG / f"qemu-{qemu}.conf"
    try:
        lines = [line for line in path.read_text().splitlines()
                 if line.startswith(":")]
    except OSError:
        raise BinfmtError(f"{path} is missing (Debian package: qemu-user-static)") from None
    if not lines:
        raise BinfmtError(f"{path} holds no registration line")
    return lines[0]


def _fields(line: str) -> list[str]:
    """:name:type:offset:magic:mask:interpreter:flags -> its seven fields."""
    fields = line[1:].split(line[0])
    if len(fields) != 7:
        raise BinfmtError(f"not a binfmt_misc registration: {line!r}")
    return fields


def kit_line(qemu: str) -> str:
    """The registration the kit makes: qemu-user-static's, under the kit's name, with F."""
    name, kind, offset, magic, mask, interpreter, flags = _fields(config_line(qemu))
    if not Path(interpreter).exists():
        raise BinfmtError(f"{interpreter} is missing (Debian package: qemu-user-static)")
    flags = "".join(sorted(set(flags) | {"F"}))
    return ":".join(["", PREFIX + name, kind, offset, magic, mask, interpreter, flags])


def mounted() -> bool:
    return (BINFMT / "register").exists()


def _entry(name: str) -> dict | None:
    try:
        text = (BINFMT / name).read_text()
    except OSError:
        return None
    lines = text.splitlines()
    info = {"enabled": bool(lines) and lines[0] == "enabled"}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        info[key.rstrip(":")] = value
    return info


def usable_entry(qemu: str) -> str | None:
    """The name of an enabled registration for this architecture that has the F flag (the
    machine's own or the kit's), or None."""
    _, _, _, magic, _, _, _ = _fields(config_line(qemu))
    want = magic.encode().decode("unicode_escape").encode("latin-1").hex()
    for path in sorted(BINFMT.iterdir()) if BINFMT.is_dir() else []:
        if path.name in ("register", "status"):
            continue
        info = _entry(path.name)
        if info and info["enabled"] and "F" in info.get("flags", "") and \
                info.get("magic") == want:
            return path.name
    return None


def problem(qemu: str) -> str | None:
    """Why qemu-user for `qemu` cannot be used here (None: it can), without changing
    anything on the machine."""
    try:
        kit_line(qemu)
    except BinfmtError as exc:
        return str(exc)
    if mounted():
        return None
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "this kernel has no binfmt_misc (CONFIG_BINFMT_MISC)"
    return None


def _mount() -> None:
    global _MOUNTED_BY_US
    if mounted():
        return
    done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 or not mounted():
        raise BinfmtError(f"cannot mount binfmt_misc on {BINFMT}: "
                          f"{done.stderr.strip() or f'exit {done.returncode}'}")
    _MOUNTED_BY_US = True


def _ensure(qemu: str, name: str) -> None:
    """Make `qemu` binaries run: the kit's entry `name` (made here, or left by another
    kit process that uses it too), or the machine's own registration."""
    _mount()
    info = _entry(name)
    if info and info["enabled"] and "F" in info.get("flags", ""):
        return
    if info is not None:                     # disabled or changed: ours to make again
        with contextlib.suppress(OSError):
            (BINFMT / name).write_text("-1")
    elif usable_entry(qemu) is not None:
        return
    try:
        (BINFMT / "register").write_text(kit_line(qemu))
    except OSError as exc:
        raise BinfmtError(f"cannot register {name} with binfmt_misc: {exc}") from None


def _remove_unused(name: str) -> None:
    """Remove the kit's entry, and unmount binfmt_misc if this process mounted it, unless
    some target (of any kit process) still holds it."""
    global _MOUNTED_BY_US
    with contextlib.suppress(exclusive.Busy), exclusive.held([_user_lock(name)], wait=0):
        if _entry(name) is not None:
            with contextlib.suppress(OSError):
                (BINFMT / name).write_text("-1")    # removes the entry
    # since 6.7 an unmount also removes every entry of that binfmt_misc (an instance per
    # user namespace): only once no target anywhere runs under qemu-user
    if _MOUNTED_BY_US:
        with contextlib.suppress(exclusive.Busy), exclusive.held([USERS], wait=0):
            subprocess.run(["umount", str(BINFMT)], capture_output=True, timeout=30,
                           check=False)
            _MOUNTED_BY_US = False


def _user_lock(name: str) -> str:
    return f"binfmt-{name}"


@contextlib.contextmanager
def registered(qemu: str):
    """Within this block, binaries of the architecture run under qemu-user."""
    name = PREFIX + _fields(config_line(qemu))[0]
    try:
        with exclusive.held([USERS, _user_lock(name)], shared=True):
            with exclusive.held([GUARD]):
                _ensure(qemu, name)
            yield
    finally:
        with exclusive.held([GUARD]):
            _remove_unused(name)


def qemu_version(qemu: str) -> str:
    """`qemu-aarch64-static --version`'s first line, for the report's "how it was run"."""
    try:
        out = subprocess.run([f"qemu-{qemu}-static", "--version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"
