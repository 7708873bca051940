"""A report set (report.json, report.md, report.html, junit.xml, bench.json) replaces
the previous one as a whole, or not at all.

Every file of a run is written into a fresh staging directory inside the report
directory (DIR/.incoming-*), flushed to disk, and then listed in a marker file; only then
are the files renamed into place, report.json last, and the report files of earlier runs
that this run did not write are removed. A run killed while writing leaves a staging
directory without a marker: it is deleted and the previous set stays. A run killed
during the renames (microseconds) leaves a marker: the next writer to lock the directory
finishes the renames first (`recover`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kit.report.atomic import fsync_dir, write_atomic

REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml", "bench.json")
PARTIAL_DIR = "partial"
STAGING_PREFIX = ".incoming-"
MARKER = ".complete"


class Staging:
    """The files of one run, on their way into DIR (or DIR/partial)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.directory))

    def write(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)

    def commit(self, dest: str = ".", *, drop: tuple[str, ...] = ()) -> list[Path]:
        """Move the staged files into DIR/DEST (a name relative to DIR) as one set;
        DROP names subdirectories of DIR the new set makes obsolete."""
        files = sorted((p.name for p in self.path.iterdir() if p.name != MARKER),
                       key=lambda name: (name == "report.json", name))   # report.json last
        for name in files:
            with open(self.path / name, "rb") as staged:  # pytest wrote junit.xml unflushed
                os.fsync(staged.fileno())
        plan = {"dest": dest, "files": files, "drop": list(drop)}
        write_atomic(self.path / MARKER, json.dumps(plan))
        fsync_dir(self.path)
        return _roll_forward(self.directory, self.path, plan)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _roll_forward(directory: Path, staging: Path, plan: dict) -> list[Path]:
    dest = directory / plan["dest"]
    dest.mkdir(exist_ok=True)
    for name in plan["files"]:
        if (staging / name).exists():  # absent: moved before a crash
            os.replace(staging / name, dest / name)
    for name in set(REPORT_FILES) - set(plan["files"]):
        (dest / name).unlink(missing_ok=True)   # an older run's file must not pass for ours
    for sub in plan["drop"]:
        shutil.rmtree(directory / sub, ignore_errors=True)
    fsync_dir(dest)
    shutil.rmtree(staging, ignore_errors=True)
    return [dest / name for name in plan["files"]]


def recover(directory: Path) -> None:
    """Finish or discard what a killed run left behind. Only call with the lock held:
    every staging directory then belongs to a process that is gone."""
    for staging in Path(directory).glob(STAGING_PREFIX + "*"):
        marker = staging / MARKER
        try:
            plan = json.loads(marker.read_text()) if marker.exists() else None
        except (OSError, ValueError):
            plan = None
        if plan is not None:
            _roll_forward(Path(directory), staging, plan)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    for leftover in Path(directory).glob(".*.tmp"):  # a write_atomic cut short
        leftover.unlink(missing_ok=True)


def settle(directory: Path) -> None:
    """For readers (`kit list`, `kit explain`): finish a swap a killed run left half done,
    if no other run holds the directory; otherwise leave it to that run."""
    from kit.report.directory import ReportDirError, ReportLock

    if not any((s / MARKER).exists() for s in Path(directory).glob(STAGING_PREFIX + "*")):
        return
    try:
        with ReportLock(directory):
            recover(directory)
    except (ReportDirError, OSError):
        pass   # busy or read-only: the next writer finishes it


def complete_report_in(directory: Path) -> dict | None:
    """DIR's report.json if it records a whole run (one a partial run must not replace)."""
    try:
        report = json.loads((Path(directory) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return None if report.get("partial") else report
