"""The target kernel's build configuration (its .config), for `applies: kernel_config`.

Some documented behaviours exist only in kernels built with an option (kcmp(2) needs
CONFIG_KCMP, TFD_IOC_SET_TICKS needs CONFIG_CHECKPOINT_RESTORE, kernel AIO needs CONFIG_AIO).
The config is looked for, in this order:

    $KIT_KERNEL_CONFIG         a config file, plain or gzip (the matrix's qemu target sets it
                               to the booted package's boot/config-*); when set, it is the
                               only place looked at
    /proc/config.gz            the running kernel's own (CONFIG_IKCONFIG_PROC)
    /boot/config-$(uname -r)   what distributions install beside the kernel

When none is found the config is unknown and behaviours that need an option run anyway:
a deviation that may be a missing option is more honest than a silent "not applicable".
Where the config came from, or that none was found, is part of the Target's description.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib

ENV = "KIT_KERNEL_CONFIG"
PROC = "/proc/config.gz"
BOOT = "/boot/config-{release}"

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(text: str) -> tuple[dict[str, str], set[str]]:
    """A .config's `CONFIG_X=value` lines ({symbol: value}) and `# CONFIG_X is not set`
    lines (a set). Values stay as written: y, m, a number, or a quoted string."""
    values: dict[str, str] = {}
    unset: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        found = _SET.match(line)
        if found:
            values[found.group(1)] = found.group(2)
            continue
        found = _NOT_SET.match(line)
        if found:
            unset.add(found.group(1))
    return values, unset


class KernelConfig:
    """One kernel's options, or the fact that they are unknown (`source` is None)."""

    def __init__(self, source: str | None, values: dict[str, str] | None = None,
                 note: str = ""):
        self.source = source            # the file read, None when no config was found
        self.values = dict(values or {})
        self.note = note                # why none was found (what was tried)

    @classmethod
    def unknown(cls, note: str = "not looked up") -> KernelConfig:
        return cls(None, note=note)

    @property
    def known(self) -> bool:
        return self.source is not None

    def enabled(self, symbol: str) -> bool | None:
        """True if built in or a module (any value but n), False if not set, None when the
        config is unknown. A symbol the file does not mention is not set: kconfig leaves
        out symbols that were never selectable, as the C preprocessor sees it too."""
        if not self.known:
            return None
        return self.values.get(symbol, "n") != "n"

    def missing(self, requirements) -> list[tuple[str, ...]]:
        """The requirements that do not hold: each requirement is a tuple of symbols, any
        one of which will do. Empty when the config is unknown."""
        if not self.known:
            return []
        return [alternatives for alternatives in requirements
                if not any(self.enabled(s) for s in alternatives)]

    def describe(self) -> str:
        if self.known:
            return f"{self.source} ({len(self.values)} options set)"
        return f"none found ({self.note}); behaviours needing a kernel option run regardless"

    def __repr__(self) -> str:
        return f"KernelConfig({self.describe()!r})"


def read(path: str) -> KernelConfig:
    """The config in one file (gzip recognised by its magic, whatever the name)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    values, unset = parse(data.decode("utf-8", "replace"))
    if not values and not unset:
        raise ValueError("no CONFIG_ lines: not a kernel config")
    return KernelConfig(path, values)


# gzip.BadGzipFile is an OSError; a truncated or corrupt stream raises these others
_UNREADABLE = (OSError, ValueError, EOFError, zlib.error)


def _why(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def find(environ=None, release: str | None = None) -> KernelConfig:
    """Look for the config in the documented order; never raises."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(ENV, "")
    if explicit:
        # Named on purpose: a wrong path is reported, not papered over by another file.
        try:
            return read(explicit)
        except _UNREADABLE as exc:
            return KernelConfig.unknown(f"{ENV}={explicit}: {_why(exc)}")
    release = os.uname().release if release is None else release
    tried = [f"{ENV} unset"]
    for path in (PROC, BOOT.format(release=release)):
        if not os.path.exists(path):
            tried.append(f"no {path}")
            continue
        try:
            return read(path)
        except _UNREADABLE as exc:
            tried.append(f"{path}: {_why(exc)}")
    return KernelConfig.unknown("; ".join(tried))


_current: KernelConfig | None = None


def current() -> KernelConfig:
    """The running kernel's config, looked up once per process (forked checkers inherit
    it, so /proc/config.gz is not decompressed per behaviour)."""
    global _current
    if _current is None:
        _current = find()
    return _current


def reset() -> None:
    """Forget the cached config (tests change KIT_KERNEL_CONFIG between cases)."""
    global _current
    _current = None


def requirement_text(alternatives: tuple[str, ...]) -> str:
    return " or ".join(alternatives)
