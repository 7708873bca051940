"""The kernel's real upstream version (its patch level), and where it was read.

`uname -r` is the name a distribution gave its build. Debian and Ubuntu keep the ABI in it,
not the stable release: Debian's 5.10.262 reads `5.10.0-46-amd64`, its 6.1.192
`6.1.0-57-amd64`, Ubuntu's 5.15.131 `5.15.0-91-generic`. A version gate on a stable backport
("fixed in 5.10.56") needs the real one. Looked for in this order, the first found wins:

    target override           $KIT_KERNEL_VERSION (a matrix target's `kernel_version:`), for
                              kernels that do not tell (gVisor says 4.4.0 and implements a
                              recent ABI) or that the kit cannot read
    /proc/version_signature   Ubuntu: "Ubuntu 5.15.0-91.101-generic 5.15.131", upstream last
    uname -v                  Debian: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
    uname -r                  anyone else: its numeric prefix

A distribution's version counts only when it names the same MAJOR.MINOR as `uname -r`: a
string naming another series describes some other kernel (a build that set its own
version text), and then the release stands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

ENV = "KIT_KERNEL_VERSION"
# gVisor's target set this before there was a general override; still honoured.
OLD_ENV = "KIT_ASSUME_KERNEL"
SIGNATURE = "/proc/version_signature"

FROM_OVERRIDE = "target override"
FROM_RELEASE = "uname -r"
FROM_DEBIAN = "uname -v (Debian)"

_PREFIX = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
# a release candidate: "6.15.0-rc3" is 6.15-rc3, which comes before 6.15 (a change gate may
# name an -rc release)
_RC = re.compile(r"(\d+)\.(\d+)(?:\.0)?-rc(\d+)")
_OVERRIDE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:-rc\d+)?")
# Debian's KBUILD_BUILD_VERSION_TIMESTAMP is "Debian SOURCEVERSION (DATE)"; the source
# version may carry an epoch (Raspberry Pi OS: "Debian 1:6.6.51-1+rpt3").
_DEBIAN = re.compile(r"\bDebian (?:\d+:)?(\d+\.\d+(?:\.\d+)?)(?![\d.])")


class BadKernelVersion(ValueError):
    """An override that is not a kernel version; the message names where it was set."""


@dataclass(frozen=True)
class PatchLevel:
    version: Version
    source: str         # one of the FROM_* texts, or "/proc/version_signature (Ubuntu)"


def numeric_prefix(release: str) -> Version:
    """'6.18.44-fc-v669' -> Version('6.18.44'): only the numeric prefix counts;
    '6.15.0-rc3' -> Version('6.15rc3')."""
    rc = _RC.match(release)
    if rc:
        return Version(f"{rc.group(1)}.{rc.group(2)}rc{rc.group(3)}")
    match = _PREFIX.match(release)
    if not match:
        return Version("0")
    return Version(".".join(g for g in match.groups() if g is not None))


def parse_override(text: str, where: str) -> Version:
    """MAJOR.MINOR or MAJOR.MINOR.PATCH (or a release candidate, 6.15-rc3), nothing else: a
    release string such as 5.10.0-46-amd64 here would bring back the very ambiguity the
    override is for."""
    if not isinstance(text, str) or not _OVERRIDE.fullmatch(text.strip()):
        raise BadKernelVersion(f"{where}: {text!r} is not a kernel version (MAJOR.MINOR or "
                               f"MAJOR.MINOR.PATCH, such as 5.10.262)")
    return Version(text.strip())


def override_from_env(environ) -> tuple[str, str]:
    """(value, variable) of the override in the environment, ('', '') when none is set."""
    for name in (ENV, OLD_ENV):
        value = environ.get(name, "")
        if value:
            parse_override(value, name)
            return value, name
    return "", ""


def from_debian(version_string: str) -> Version | None:
    """The upstream version in a Debian kernel's `uname -v`, else None."""
    match = _DEBIAN.search(version_string)
    return Version(match.group(1)) if match else None


def from_signature(signature: str) -> tuple[Version, str] | None:
    """(upstream version, distribution) from /proc/version_signature's text, else None.
    Ubuntu's reads "Ubuntu 5.15.0-91.101-generic 5.15.131": the last word is upstream's."""
    words = signature.split()
    if len(words) < 2:
        return None
    match = _PREFIX.fullmatch(words[-1])
    return (Version(words[-1]), words[0]) if match else None


def read_signature(path: str = SIGNATURE) -> str:
    """The file's first line, '' where there is none (every distribution but Ubuntu)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline(4096).strip()
    except OSError:
        return ""


def _same_series(a: Version, b: Version) -> bool:
    return a.release[:2] == b.release[:2]


def resolve(release: str, version_string: str = "", signature: str = "",
            override: str = "") -> PatchLevel:
    """The version to judge the kernel by, first found in the order the module describes."""
    if override:
        return PatchLevel(parse_override(override, FROM_OVERRIDE), FROM_OVERRIDE)
    named = numeric_prefix(release)
    found = from_signature(signature)
    if found and _same_series(found[0], named):
        return PatchLevel(found[0], f"{SIGNATURE} ({found[1]})")
    debian = from_debian(version_string)
    if debian and _same_series(debian, named):
        return PatchLevel(debian, FROM_DEBIAN)
    return PatchLevel(named, FROM_RELEASE)
