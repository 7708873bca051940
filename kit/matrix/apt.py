"""A private apt configuration for one Debian suite.

A qemu target may name the suite its kernel comes from (`suite: bullseye` for 5.10) although
the machine's own sources are another release's. The kit then keeps, under the cache, its own
sources.list, package lists and download cache for that suite, and passes them to apt-get and
apt-cache with `-o` options, so the system's configuration is never read or changed:

    $KIT_CACHE/apt/<suite>/
        etc/sources.list        the suite and its security updates, signed by the Debian keyring
        state/lists/            what `apt-get update` fetched; refreshed when a day old
        state/status            empty: nothing is installed through this configuration
        cache/                  apt's own package caches
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

ARCHIVE = "http://deb.debian.org/debian"
SECURITY_ARCHIVE = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MAX_AGE = 24 * 3600            # package lists older than this are fetched again
SUITE = re.compile(r"[a-z][a-z0-9-]{1,30}")


class AptError(Exception):
    """The suite's package lists could not be fetched."""


def suite_problem(suite: object) -> str | None:
    """Why `suite` cannot name a Debian suite (None if it can)."""
    if not isinstance(suite, str) or not SUITE.fullmatch(suite):
        return f"{suite!r} is not a Debian suite name (like bullseye or bookworm)"
    return None


class PrivateApt:
    """apt-get / apt-cache pointed at one suite through options only."""

    def __init__(self, suite: str, root: Path, archive: str = ARCHIVE,
                 security: bool = True):
        self.suite, self.root, self.archive, self.security = suite, Path(root), archive, security

    def sources(self) -> str:
        signed = f"[signed-by={KEYRING}]"
        lines = [f"deb {signed} {self.archive} {self.suite} main"]
        if self.security:
            lines.append(f"deb {signed} {SECURITY_ARCHIVE} {self.suite}-security main")
        return "\n".join(lines) + "\n"

    def options(self) -> list[str]:
        r = self.root
        settings = {
            "Dir::Etc::SourceList": r / "etc" / "sources.list",
            "Dir::Etc::SourceParts": r / "etc" / "sources.list.d",
            "Dir::Etc::Preferences": r / "etc" / "preferences",
            "Dir::Etc::PreferencesParts": r / "etc" / "preferences.d",
            "Dir::State": r / "state",
            "Dir::State::status": r / "state" / "status",
            "Dir::Cache": r / "cache",
        }
        if os.geteuid() == 0:
            # root's apt drops to _apt for downloads, which cannot write a cache under /root
            settings["APT::Sandbox::User"] = "root"
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def _lay_out(self) -> None:
        for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial",
                    "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        sources = self.root / "etc" / "sources.list"
        if not sources.exists() or sources.read_text() != self.sources():
            sources.write_text(self.sources())
            (self.root / "state" / "updated").unlink(missing_ok=True)

    def age(self) -> float | None:
        """Seconds since the lists were last fetched (None: never)."""
        try:
            return time.time() - (self.root / "state" / "updated").stat().st_mtime
        except FileNotFoundError:
            return None

    def update(self, log=None, *, force: bool = False) -> None:
        """Fetch the suite's package lists, unless they are fresh (one at a time: two
        targets of one suite share the lists)."""
        self._lay_out()
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._update(log, force)

    def _update(self, log, force: bool) -> None:
        age = self.age()
        if not force and age is not None and age < MAX_AGE:
            return
        if log is not None:
            print(f"apt-get update for {self.suite} (private configuration in {self.root})",
                  file=log, flush=True)
        try:
            proc = subprocess.run(["apt-get", *self.options(), "update", "-q"],
                                  capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            raise AptError(f"apt-get update for {self.suite} took over 900 s") from None
        # apt-get update exits 0 on some fetch failures; its "E:"/"W:" lines say so
        said = (proc.stdout + "\n" + proc.stderr).splitlines()
        failed = [line for line in said if line.startswith(("E:", "Err:"))]
        if proc.returncode != 0 or failed:
            raise AptError(f"apt-get update for {self.suite} failed: "
                           f"{' '.join(failed or [proc.stderr.strip()])[-400:]}")
        (self.root / "state" / "updated").touch()
