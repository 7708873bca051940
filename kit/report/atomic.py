"""Writing a file so that readers see the old content or the new, never a torn one:
write a temporary file in the same directory, flush it to disk, rename it over the name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make renames in DIRECTORY durable (a crash after a rename must not undo it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (9p, some FUSE) refuse fsync on a directory
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> Path:
    """Replace PATH with TEXT in one rename; on any error PATH is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for everyone who may read the dir
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
