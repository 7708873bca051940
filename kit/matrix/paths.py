"""Where a matrix run writes, on the host.

Every path handed to a target is absolute and free of symlinks: a relative path means
something else to a subprocess with another cwd, to a container's volume option and to a
guest that mounts the share at the host's path inside its chroot. And whatever is written
for a target stays inside the output directory: a target's name becomes a file name there.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from kit.report.directory import ReportDirError, check_report_dir

# A target name is a file name in the output directory and an artifact name in CI: a
# conservative set, starting with a letter or digit (so never "." or ".." or "-x").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit, "
             "at most 64 characters")


class OutputPathError(Exception):
    """An output path that cannot be used safely."""


def name_problem(name: object) -> str | None:
    """None if `name` is a usable target name, else what is wrong with it."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not NAME_PATTERN.fullmatch(name):
        return f"{name!r} is not a valid target name ({NAME_RULE})"
    return None


def output_root(out: Path | str) -> Path:
    """The output directory as an absolute, symlink-free path, created if missing and found
    writable now, not after every target has run."""
    root = Path(out).expanduser().resolve()
    try:
        return check_report_dir(root)
    except ReportDirError as exc:
        raise OutputPathError(str(exc)) from None


def target_paths(root: Path, name: str) -> tuple[Path, Path]:
    """(report directory, log file) of target `name`, both directly inside `root`."""
    problem = name_problem(name)
    if problem:
        raise OutputPathError(f"target name {problem}")
    if not root.is_absolute():
        raise OutputPathError(f"the output directory {root} is not an absolute path")
    paths = (root / name, root / f"{name}.log")
    for path in paths:
        # a symlink left in the output directory (by a guest, a container or another
        # user) would carry this target's writes elsewhere
        if path.is_symlink():
            raise OutputPathError(f"{path} is a symbolic link; refusing to write through it")
        if path.resolve().parent != root:
            raise OutputPathError(f"{path} leads outside the output directory {root}")
    return paths


def read_regular(path: Path, limit: int = 256 << 20) -> bytes:
    """The bytes of `path` if it is a regular file (not a symlink, FIFO or device), since
    a target's directory holds what a guest or container wrote."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OutputPathError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise OutputPathError(f"{path} is larger than {limit} bytes")
        return f.read(limit + 1)


def log_tail(path: Path, lines: int = 4, limit: int = 64 * 1024) -> str:
    """The last non-empty lines of a log, joined on one line (for a target's reason)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - limit))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])
