"""qemu-user through binfmt_misc: a foreign userland's programs run under Debian's qemu.

Debian's qemu-user-static ships the registration of each architecture it emulates
(/usr/lib/binfmt.d/qemu-ARCH.conf: the magic and mask of the architecture's ELF header and
the interpreter). The kit registers that line under a name of its own (`kit-qemu-ARCH`) with
the F flag, so the kernel opens the interpreter at registration and a chroot needs no copy
of it, and removes it afterwards; binfmt_misc is mounted for the time it is needed if it was
not. A registration of the machine's own (binfmt-support's `qemu-aarch64`, systemd-binfmt's)
that is enabled and has F is used as it is and never touched. Targets run in threads of one
`kit matrix`, so the registrations are counted: the last user of one removes it.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

BINFMT = Path("/proc/sys/fs/binfmt_misc")
CONFIG = Path("/usr/lib/binfmt.d")          # qemu-user-static's registrations
PREFIX = "kit-"

_LOCK = threading.Lock()
_USERS: dict[str, int] = {}                 # kit entry name -> targets using it
_ACTIVE = 0                                 # targets inside registered(), whoever's entry
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


def _unmount_if_ours() -> None:
    # since 6.7 an unmount also removes every entry of that binfmt_misc (an instance per
    # user namespace): only once no target of ours runs
    global _MOUNTED_BY_US
    if _MOUNTED_BY_US and _ACTIVE == 0:
        subprocess.run(["umount", str(BINFMT)], capture_output=True, timeout=30, check=False)
        _MOUNTED_BY_US = False


def _acquire(qemu: str) -> str | None:
    """Make `qemu` binaries run; the kit's entry name to release, or None if the machine's
    own registration serves."""
    global _ACTIVE
    with _LOCK:
        _mount()
        name = PREFIX + _fields(config_line(qemu))[0]
        if name in _USERS:
            _USERS[name] += 1
        elif usable_entry(qemu) is not None:
            name = None
        else:
            try:
                (BINFMT / "register").write_text(kit_line(qemu))
            except OSError as exc:
                _unmount_if_ours()
                raise BinfmtError(f"cannot register {name} with binfmt_misc: {exc}") from None
            _USERS[name] = 1
        _ACTIVE += 1
        return name


def _release(name: str | None) -> None:
    global _ACTIVE
    with _LOCK:
        _ACTIVE -= 1
        if name is not None:
            _USERS[name] -= 1
            if _USERS[name] == 0:
                del _USERS[name]
                with contextlib.suppress(OSError):
                    (BINFMT / name).write_text("-1")    # removes the entry
        _unmount_if_ours()


@contextlib.contextmanager
def registered(qemu: str):
    """Within this block, binaries of the architecture run under qemu-user."""
    name = _acquire(qemu)
    try:
        yield
    finally:
        _release(name)


def qemu_version(qemu: str) -> str:
    """`qemu-aarch64-static --version`'s first line, for the report's "how it was run"."""
    try:
        out = subprocess.run([f"qemu-{qemu}-static", "--version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"
