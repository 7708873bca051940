"""Behaviours that change a sysctl (`machine_wide:`, kit.engine.machine_wide), as a user
sees them: not run without --allow-machine-wide (not applicable, with the reason), run
and restored with it, and restored after a checker or a whole run was killed with
SIGKILL mid-behaviour. The experiments change fs.epoll.max_user_watches by one (nobody
notices) and always put it back; they need root."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import (
    _env,
    behaviour,
    line_of,
    load,
    run_kit,
    run_one,
    run_plugin,
    spec_text,
    write_spec,
)

from kit.engine import exclusive, machine_wide
from kit.engine.interpreter import ERROR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets a sysctl: needs root")

WATCHES = "/proc/sys/fs/epoll/max_user_watches"
SYSCTL = "fs.epoll.max_user_watches"


@pytest.fixture(autouse=True)
def one_test_at_a_time():
    """The tests of this file change one sysctl and read it back: on two xdist workers at
    once, one would read the other's value as the original. An flock keeps them apart."""
    path = os.path.join(tempfile.gettempdir(), "kit-tests-machine-wide.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _watches() -> int:
    with open(WATCHES) as fh:
        return int(fh.read())


@pytest.fixture
def original():
    """The value before the test, checked (and put back, should the kit have failed) after."""
    before = _watches()
    yield before
    after = _watches()
    if after != before:
        with open(WATCHES, "w") as fh:
            fh.write(f"{before}\n")
    assert after == before, f"{SYSCTL} left at {after}, was {before}"


def _journal(tmpdir: Path | None = None) -> Path:
    lock_dir = tmpdir / "kit-locks-0" if tmpdir else Path(exclusive.lock_dir())
    return lock_dir / f"{machine_wide.JOURNAL_PREFIX}{SYSCTL}"


def _spec(value: int, then: str = "") -> str:
    return spec_text(behaviour("x.sysctl", f"""
        machine_wide: [{SYSCTL}]
        steps:
          - sysctl_set: {{sysctl: {SYSCTL}, value: {value}}}
            as: old
          - sysctl_get: {{sysctl: {SYSCTL}}}
            expect: {{value: {value}}}
        {then}"""))


def test_without_the_option_it_is_not_applicable_with_the_reason(tmp_path, original):
    write_spec(tmp_path, _spec(original - 1))
    ran = run_plugin(tmp_path)
    assert ran.ret == 0, ran.output
    verdict = ran.verdicts()["x.sysctl"]
    assert verdict["status"] == "not applicable"
    assert "changes machine-wide state (fs.epoll.max_user_watches)" in verdict["message"]
    assert "--allow-machine-wide" in verdict["message"]


def test_with_the_option_it_runs_and_the_value_is_restored(tmp_path, original):
    write_spec(tmp_path, _spec(original - 1))
    ran = run_plugin(tmp_path, "--allow-machine-wide")
    assert ran.ret == 0, ran.output
    assert ran.statuses() == {"x.sysctl": "conforms"}
    assert ran.report["target"]["allow_machine_wide"] is True
    assert not _journal().exists()


def test_kit_run_takes_the_option_too(tmp_path, original):
    write_spec(tmp_path, _spec(original - 1))
    report = tmp_path / "report"
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                  str(report), "-n", "0", "--allow-machine-wide", report_dir=report)
    assert ran.ret == 0, ran.output
    assert ran.statuses() == {"x.sysctl": "conforms"}


def test_a_wrong_expectation_deviates_and_the_value_is_restored(tmp_path, original):
    write_spec(tmp_path, _spec(original - 1, then="""
          - sysctl_get: {sysctl: fs.epoll.max_user_watches}
            expect: {value: 12345}
        """))
    ran = run_plugin(tmp_path, "--allow-machine-wide")
    assert ran.ret == 1
    verdict = ran.verdicts()["x.sysctl"]
    assert verdict["status"] == "deviates"
    assert f"expected value 12345, got {original - 1:#x} ({original - 1})" in verdict["message"]


def test_a_sysctl_the_behaviour_does_not_declare_is_refused(original):
    text = spec_text(behaviour("x.sysctl", """
        machine_wide: [fs.file-max]
        steps:
          - sysctl_set: {sysctl: fs.epoll.max_user_watches, value: 1}
        """))
    target = __import__("kit.engine.target", fromlist=["Target"]).Target.current()
    target.allow_machine_wide = True
    with machine_wide.held(["fs.file-max"]):
        outcome = run_one(text, target=target)
    assert outcome.status == ERROR
    assert "refused: sysctl fs.epoll.max_user_watches is not held for this behaviour" \
        in outcome.message


def test_a_sysctl_outside_the_table_is_refused_when_the_spec_loads():
    text = spec_text(behaviour("x.attack", """
        steps:
          - sysctl_set: {sysctl: kernel.core_pattern, value: 1}
        """))
    [error] = load(text).errors
    assert (error.behaviour, error.field) == ("x.attack", "steps[0].sysctl_set.sysctl")
    assert error.line == line_of(text, "sysctl_set")
    assert "not one a spec may change" in error.message


def test_machine_wide_names_only_known_sysctls():
    text = spec_text(behaviour("x.bad", """
        machine_wide: [kernel.core_pattern]
        steps:
          - eventfd: {}
        """))
    [error] = load(text).errors
    assert error.behaviour == "x.bad" and "machine_wide" in error.field


# The checker sets the sysctl, then blocks for 30 s: long enough to be killed mid-behaviour.
def _blocking_spec(value: int) -> str:
    return _spec(value, then="""
          - eventfd: {}
            as: efd
          - read_u64: {fd: $efd}
            within: 30
        """)


def _start(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-n", "0", "--allow-machine-wide", *args,
         str(tmp_path / "specs")],
        cwd=tmp_path, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _private_tmpdir(tmp_path: Path) -> tuple[Path, dict]:
    """Every run of the kit restores a killed run's journal, and the suite starts runs on
    the other worker all the time: a lock directory of the test's own keeps the journal
    for the runs the test starts, so the message it looks for is theirs."""
    private = tmp_path / "tmp"
    private.mkdir()
    return private, {**_env(), "TMPDIR": str(private)}


def test_a_checker_killed_mid_behaviour_is_restored_by_its_parent(tmp_path, original):
    private, env = _private_tmpdir(tmp_path)
    write_spec(tmp_path, _blocking_spec(original - 1))
    proc = _start(tmp_path, "--kit-report", str(tmp_path / "report"), env=env)
    try:
        _until(lambda: _watches() == original - 1, "the checker set the sysctl")
        assert _journal(private).read_text().strip() == str(original)
        checkers = _children(proc.pid)
        assert checkers
        for pid in checkers:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _watches() == original, out
    assert not _journal(private).exists()
    assert f"{SYSCTL} restored to {original} from the journal after the checker died" in out


def test_a_run_killed_mid_behaviour_is_restored_by_the_next_run(tmp_path, original):
    private, env = _private_tmpdir(tmp_path)
    write_spec(tmp_path, _blocking_spec(original - 1))
    proc = _start(tmp_path, env=env)
    try:
        _until(lambda: _watches() == original - 1, "the checker set the sysctl")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the run and its checker: no finally runs
        proc.wait()
    _until(lambda: not any(_children(proc.pid)), "the checker died with the run", 10)
    assert _watches() == original - 1 and _journal(private).exists()
    # the next run, whatever it selects, puts the value back before anything runs
    ran = run_plugin(tmp_path, "-k", "nothing_matches_this", report=False, env=env)
    assert f"kit: {SYSCTL} restored to {original} (journal of a run that was killed)" \
        in ran.output
    assert _watches() == original
    assert not _journal(private).exists()


def test_with_the_option_a_machine_wide_behaviour_never_overlaps_another(monkeypatch):
    """While max_user_watches is 3, no behaviour of another worker may be registering:
    every behaviour holds the machine shared, a machine-wide one holds it alone."""
    from helpers import READS_COUNTER, load_one

    monkeypatch.setattr(exclusive, "WAIT", 0.2)
    lowers = load_one(_spec(1))
    other = load_one(spec_text(behaviour("x.other", READS_COUNTER)))
    with machine_wide.fenced(other, True):
        with machine_wide.fenced(other, True):
            pass                                  # ordinary behaviours run side by side
        with pytest.raises(exclusive.Busy, match="machine_wide"):
            with machine_wide.fenced(lowers, True):
                pass
    with machine_wide.fenced(lowers, True):
        with pytest.raises(exclusive.Busy, match="machine_wide"):
            with machine_wide.fenced(other, True):
                pass
    with machine_wide.fenced(lowers, False), machine_wide.fenced(other, False):
        pass                                      # not allowed: nothing to keep apart
