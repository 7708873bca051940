"""Build a C helper with the system's compiler, once per version of its source.

The executable is cached under ~/.cache/kit/native (XDG_CACHE_HOME honoured), named by a
hash of the source, the flags and the compiler's path, so an edited source is rebuilt and
parallel runs share one build. It is built under a private name and renamed into place:
a concurrent run never sees half a file. When the cache is not writable, a directory of
this user's own under the temporary directory is used (one that is not ours, or open to
others, is never trusted: an executable planted there would run as us).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

BUILD_TIMEOUT = 120.0
DEFAULT_FLAGS = ("-O2", "-pthread")


class BuildError(Exception):
    """The helper could not be built; the message says why (no compiler, cc's error)."""


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kit" / "native"


def _fallback_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"kit-native-{os.getuid()}"


def _private(base: Path) -> bool:
    """Whether `base` is a directory only this user can write (the fallback's test)."""
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        try:
            base.mkdir(mode=0o700)
        except OSError:
            return False
        st = os.lstat(base)
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def build(source: Path, name: str, flags: tuple[str, ...] = DEFAULT_FLAGS,
          cache: Path | None = None, what: str = "the helper") -> Path:
    """The executable built from `source` (cached); BuildError names why there is none.
    `what` names the helper in the error ("no C compiler: WHAT cannot be built")."""
    cc = compiler()
    if not cc:
        raise BuildError(f"no C compiler (cc/gcc) on PATH: {what} cannot be built")
    text = source.read_bytes()
    key = hashlib.sha256(text + "\0".join((cc, *flags)).encode()).hexdigest()[:16]
    places = [cache or cache_dir()]
    if cache is None:
        places.append(_fallback_dir())
    for i, base in enumerate(places):
        exe = base / f"{name}-{key}"
        try:
            if i > 0 and not _private(base):
                continue
            if exe.exists() and os.access(exe, os.X_OK):
                return exe
        except OSError:
            continue  # not ours to look into (another user's home after a privilege drop)
        try:
            base.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=f".{name}-", dir=base)
            os.close(fd)
        except OSError:
            continue  # not writable: try the next place
        try:
            subprocess.run([cc, *flags, "-o", partial, str(source)], check=True,
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            os.replace(partial, exe)
            return exe
        except subprocess.CalledProcessError as exc:
            raise BuildError(f"cc failed on {source.name}: {exc.stderr.strip()[:300]}") from None
        except subprocess.TimeoutExpired:
            raise BuildError(f"cc timed out on {source.name} after {BUILD_TIMEOUT:g} s") from None
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise BuildError(f"no writable place for {what} ({places[0]})")
