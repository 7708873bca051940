"""Never hang: a call that never returns, even when the watchdog signals it, costs its
behaviour a `timeout` verdict and nothing else. The run goes on and writes the report.

The hang is real: an LD_PRELOAD library built here makes read(2) on an eventfd loop in
pause() forever, returning to the loop after every signal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_hang_shim

SPECS = """
behaviours:
  - id: hang.read.forever
    title: A read that the preloaded library never lets return
    cite: {page: eventfd(2), section: "DESCRIPTION, read(2)", quote: "Each successful read(2) returns an 8-byte integer."}
    steps:
      - eventfd: {initval: 1, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: 1}
  - id: hang.after.fine
    title: The next behaviour still runs
    cite: {page: eventfd(2), section: NOTES, quote: "/proc/pid/fdinfo"}
    steps:
      - eventfd: {initval: 0}
        as: efd
      - fd_link: {fd: $efd}
        expect: {value: "anon_inode:[eventfd]"}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the hanging LD_PRELOAD library")
    return build_hang_shim(cc, tmp_path_factory.mktemp("shim"))


def test_a_call_that_never_returns_is_a_timeout_and_the_run_goes_on(shim, tmp_path):
    (tmp_path / "specs" / "hang").mkdir(parents=True)
    (tmp_path / "specs" / "hang" / "hang.yaml").write_text(SPECS)
    report = tmp_path / "report"
    env = dict(os.environ, LD_PRELOAD=str(shim))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "specs", "-p", "no:cacheprovider",
         "-n", "0", "--kit-report", str(report), "--kit-step-bound", "0.5",
         "--kit-limit", "4", "-p", "no:randomly"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    verdicts = {b["id"]: b for b in json.loads((report / "report.json").read_text())
                ["behaviours"]}
    assert verdicts["hang.read.forever"]["status"] == "timeout", proc.stdout[-3000:]
    hung = verdicts["hang.read.forever"]
    # Named as the target's call, and killed soon after its 0.5 s bound, not at the limit.
    assert hung["message"].startswith("line 9: read_u64(fd=")
    assert "ignored the watchdog's interruption" in hung["message"]
    assert hung["trace"][0]["status"] == "timeout" and hung["duration"] < 4
    assert verdicts["hang.after.fine"]["status"] == "conforms"
    assert proc.returncode == 1  # a timeout fails the run, it does not crash it
    assert elapsed < 60
    assert (report / "junit.xml").exists() and (report / "report.html").exists()


CRASH = r"""
#include <signal.h>
int eventfd(unsigned int initval, int flags) {
    (void)initval;
    if (flags == 0x1 /* EFD_SEMAPHORE: only this behaviour's call */) raise(SIGSEGV);
    return -1;
}
"""

CRASH_SPECS = """
behaviours:
  - id: crash.eventfd.segfault
    title: An eventfd() that the preloaded library turns into a segmentation fault
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "creates an \\"eventfd object\\""}
    steps:
      - eventfd: {initval: 0, flags: EFD_SEMAPHORE}
  - id: crash.after.fine
    title: The raw syscall, which the library does not intercept, still works
    cite: {page: eventfd(2), section: NOTES, quote: "There are two underlying Linux system calls"}
    steps:
      - eventfd2_syscall: {initval: 0}
        as: efd
      - fd_link: {fd: $efd}
        expect: {value: "anon_inode:[eventfd]"}
"""


def test_a_crash_is_an_error_of_its_behaviour_and_the_run_goes_on(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the crashing LD_PRELOAD library")
    (tmp_path / "crash.c").write_text(CRASH)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "crash.so"),
                    str(tmp_path / "crash.c")], check=True, timeout=120)
    (tmp_path / "specs" / "crash").mkdir(parents=True)
    (tmp_path / "specs" / "crash" / "crash.yaml").write_text(CRASH_SPECS)
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "specs", "-p", "no:cacheprovider",
         "-n", "2", "--kit-report", str(report)],
        cwd=tmp_path, env=dict(os.environ, LD_PRELOAD=str(tmp_path / "crash.so")),
        capture_output=True, text=True, timeout=120)
    verdicts = {b["id"]: b for b in json.loads((report / "report.json").read_text())
                ["behaviours"]}
    crashed = verdicts["crash.eventfd.segfault"]
    assert crashed["status"] == "error", proc.stdout[-3000:]
    assert "crashed" in crashed["message"] and "signal 11" in crashed["message"]
    assert verdicts["crash.after.fine"]["status"] == "conforms"
    # The crash stayed in the forked checker: no pytest-xdist worker died.
    assert "node down" not in proc.stdout and "replacing crashed worker" not in proc.stdout


# -- a target that hangs costs little ---------------------------------------------------------


def _hung(n: int) -> str:
    return f"""
  - id: hang.many.{n}
    title: One of many behaviours whose eventfd read never returns
    cite: {{page: eventfd(2), section: "DESCRIPTION, read(2)", quote: "returns an 8-byte integer"}}
    steps:
      - eventfd: {{initval: {n}, flags: EFD_NONBLOCK}}
        as: efd
      - read_u64: {{fd: $efd}}
        expect: {{value: {n}}}
"""


HUNG_WITH_WITHIN = """
  - id: hang.many.within
    title: A read given longer by its step, of a kind already seen to hang
    cite: {page: eventfd(2), section: "DESCRIPTION, read(2)", quote: "returns an 8-byte integer"}
    steps:
      - eventfd: {initval: 1, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        within: 2.5
        expect: {value: 1}
"""

SLOW_BUT_HEALTHY = """
  - id: hang.many.slow.pipe
    title: A read that blocks longer than the shortened bound, on a pipe the library spares
    cite: {page: pipe(7), section: I/O on pipes and FIFOs, quote: "a read(2) will block"}
    steps:
      - pipe2: {}
        as: pipe
      - in_thread:
          after: 1.2
          steps:
            - write: {fd: $pipe.write, data: "x"}
        as: writer
      - read: {fd: $pipe.read, size: 1}
        expect: {value: "78"}
      - join: writer
"""


def test_a_target_that_hangs_every_read_costs_about_one_bound_per_behaviour(shim, tmp_path):
    """Once a kind of call has hung twice for the full bound, later behaviours get a short
    bound for their calls: a hang of the known kind costs well under one full bound, while
    a healthy call that blocks longer than the short bound is checked again, and passes."""
    hung = [f"hang.many.{n}" for n in range(1, 9)] + ["hang.many.within"]
    (tmp_path / "specs" / "hang").mkdir(parents=True)
    (tmp_path / "specs" / "hang" / "many.yaml").write_text(
        "behaviours:\n" + "".join(_hung(n) for n in range(1, 9)) + HUNG_WITH_WITHIN
        + SLOW_BUT_HEALTHY)
    report = tmp_path / "report"
    bound = 3.0
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "specs", "-p", "no:cacheprovider",
         "-n", "0", "--kit-report", str(report), "--kit-step-bound", str(bound),
         "-p", "no:randomly"],
        cwd=tmp_path, env=dict(os.environ, LD_PRELOAD=str(shim)), capture_output=True,
        text=True, timeout=300, check=False)
    verdicts = {b["id"]: b for b in json.loads((report / "report.json").read_text())
                ["behaviours"]}
    assert {bid: verdicts[bid]["status"] for bid in hung} == dict.fromkeys(hung, "timeout"), \
        proc.stdout[-3000:]
    assert verdicts["hang.many.slow.pipe"]["status"] == "conforms", verdicts[
        "hang.many.slow.pipe"]["message"]
    costs = sorted(verdicts[bid]["duration"] for bid in hung)
    # The first two hangs (the confirmations) cost the full bound and its grace; every
    # later one less than a bound.
    assert costs[-1] < bound + 5, costs
    assert all(cost < bound for cost in costs[:-2]), costs
    later = [verdicts[bid] for bid in hung if verdicts[bid]["duration"] < bound]
    assert all("already hung for the full bound" in v["message"] for v in later)
