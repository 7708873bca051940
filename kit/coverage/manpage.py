"""The installed man pages, rendered to plain text by man-db (no roff parsing here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Wide enough that every paragraph is one line; man-db caps nothing below this.
WIDTH = "4000"
RENDER_TIMEOUT = 30   # seconds for one page: man never blocks, but a broken pager might
_PAGE = re.compile(r"^([A-Za-z0-9_.:+-]+)\((\d[a-z]*)\)$")


class ManError(Exception):
    """man-db is missing, or a page could not be rendered."""


@dataclass(frozen=True)
class Rendered:
    page: str            # "eventfd(2)"
    path: str            # the installed source file
    text: str            # plain text, one paragraph per line


def split_name(page: str) -> tuple[str, str]:
    match = _PAGE.match(page.strip())
    if not match:
        raise ValueError(f"not a man page name such as eventfd(2): {page!r}")
    return match.group(1), match.group(2)


def _env() -> dict:
    env = dict(os.environ, MANWIDTH=WIDTH, LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    env.pop("MAN_KEEP_FORMATTING", None)   # formatting off: man pipes through col -b
    return env


def _man() -> str:
    man = shutil.which("man")
    if not man:
        raise ManError("man (man-db) is not installed: ./bootstrap installs it with "
                       "manpages-dev as root, or `apt-get install man-db manpages-dev`")
    return man


def locate(pages: list[str]) -> dict[str, str | None]:
    """The installed source file of each page, None when this machine does not have it.
    One `man -w` per section: the report computes coverage at the end of every run."""
    by_section: dict[str, list[str]] = {}
    for page in pages:
        name, section = split_name(page)
        by_section.setdefault(section, []).append(name)
    out: dict[str, str | None] = {page: None for page in pages}
    for section, names in by_section.items():
        result = subprocess.run([_man(), "-w", section, *names], capture_output=True,
                                text=True, env=_env(), timeout=RENDER_TIMEOUT, check=False)
        for path in result.stdout.split():
            base = Path(path).name
            for name in names:   # eventfd.2.gz, eventfd.2: the file names its page
                if base == f"{name}.{section}" or base.startswith(f"{name}.{section}."):
                    if out[f"{name}({section})"] is None:
                        out[f"{name}({section})"] = path
    return out


def render(page: str, path: str) -> Rendered:
    result = subprocess.run(
        [_man(), "--no-hyphenation", "--no-justification", "-l", path],
        capture_output=True, text=True, env=_env(), timeout=RENDER_TIMEOUT, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise ManError(f"man could not render {page} ({path}): "
                       f"{result.stderr.strip() or f'exit {result.returncode}'}")
    return Rendered(page, path, result.stdout)


def package_version(path: str) -> str | None:
    """The version of the Debian package that installed PATH (man-pages' own numbering
    when it is manpages/manpages-dev), or None off Debian."""
    if not shutil.which("dpkg-query"):
        return None
    real = str(Path(path).resolve())
    found = subprocess.run(["dpkg-query", "-S", real], capture_output=True, text=True,
                           timeout=RENDER_TIMEOUT, check=False)
    if found.returncode != 0 or ":" not in found.stdout:
        return None
    package = found.stdout.split(":", 1)[0].strip()
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=RENDER_TIMEOUT, check=False)
    return f"{package} {version.stdout.strip()}" if version.returncode == 0 else package


def footer_version(text: str) -> str | None:
    """The page's own footer, e.g. "Linux man-pages 6.03" (the .TH line, as rendered)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    parts = re.split(r"\s{2,}", lines[-1])
    return parts[0] if parts else None
