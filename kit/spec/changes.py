"""Kernel changes as version gates: which kernels carry a change, in words and as a test.

A change lands upstream in one release and reaches older stable series as backports, each
from one patch release on: "since 6.17, and 6.12.y from 6.12.43, and 6.1.y from 6.1.149".
A kernel of a series named in `backports` carries it from that patch release on; any other
kernel carries it when it is at least the upstream release. A series older than the release
and not named is taken not to carry it (a backport nobody could confirm is not assumed).
"""

from __future__ import annotations

import re

from packaging.version import Version

from kit.spec.model import Change

RELEASE = re.compile(r"^\d+\.\d+(-rc\d+)?$")      # a mainline release: 6.17, 6.15-rc3
BACKPORT = re.compile(r"^\d+\.\d+\.\d+$")         # a stable release: 6.12.43


class BadChange(ValueError):
    """`key` is the field at fault (e.g. "backports", 1 for its second entry)."""

    def __init__(self, key, message: str):
        super().__init__(message)
        self.key, self.message = key, message


def _series(version: Version) -> tuple[int, int]:
    return (version.release + (0, 0))[:2]


def check(change: Change) -> None:
    """Raise BadChange for a change whose releases cannot describe a kernel history."""
    if not RELEASE.match(change.release):
        raise BadChange("release", f"release {change.release!r} is not a mainline release "
                                   f"(write e.g. '6.17' or '6.15-rc3')")
    upstream = _series(Version(change.release))
    seen: dict[tuple[int, int], str] = {}
    for i, backport in enumerate(change.backports):
        if not BACKPORT.match(backport):
            raise BadChange(("backports", i), f"backport {backport!r} is not a stable release "
                                              f"(write MAJOR.MINOR.PATCH, e.g. '6.12.43')")
        series = _series(Version(backport))
        if series >= upstream:
            raise BadChange(("backports", i), (
                f"backport {backport} is not in a series older than the release "
                f"{change.release}: a backport reaches an older stable series"))
        if series in seen:
            raise BadChange(("backports", i), f"backports {seen[series]} and {backport} are in "
                                              f"the same series: give its first release once")
        seen[series] = backport


def carried(change: Change, kernel: Version) -> bool:
    """Whether a kernel of this (real, upstream) version has the change."""
    for backport in change.backports:
        first = Version(backport)
        if _series(kernel) == _series(first):
            return kernel >= first
    return kernel >= Version(change.release)


def describe(change: Change) -> str:
    """The change in one phrase: subject, commit, release and backports."""
    text = f"'{change.subject}' (" + (f"commit {change.commit}, " if change.commit else "") \
        + f"in {change.release}"
    if change.backports:
        text += f"; backported to {', '.join(change.backports)}"
    text += ")"
    if change.note:
        text += f" [{change.note}]"
    return text

