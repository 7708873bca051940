"""Reports you can trust: the report directory is checked and locked before anything runs,
a report set is whole or absent, a partial run says so and never silently replaces a
complete report, a full disk keeps the previous report. Run as a user runs them: `kit`
in a subprocess, on the real kernel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    READS_COUNTER,
    READS_COUNTER_WRONG,
    _env,
    behaviour,
    run_kit,
    run_python,
    spec_text,
    write_spec,
)

from kit.report.directory import ReportLock
from kit.report.reportset import REPORT_FILES, recover

GOOD = behaviour("x.trust.good", READS_COUNTER)
WRONG = behaviour("x.trust.wrong", READS_COUNTER_WRONG)
LATER = behaviour("x.trust.later", READS_COUNTER)
# Blocks until its bound: long enough to be interrupted in the middle of it.
SLOW = behaviour("x.trust.slow", """
    steps:
      - eventfd: {initval: 0}
        as: efd
      - read_u64: {fd: $efd}
        within: 20
""")


def _kit_run(root: Path, report: Path, *args: str):
    return run_kit(root, "run", "--specs", str(root / "specs"), "--report", str(report),
                   "-n", "0", *args, report_dir=report)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != ".kit.lock"}


def _debris(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir()
            if p.name.startswith(".incoming-") or p.name.endswith(".tmp")]


def _run_ids(directory: Path) -> set[str]:
    """The run id each file of the set carries: all equal when the set is whole."""
    report = json.loads((directory / "report.json").read_text())
    html = re.findall(r'<meta name="kit-run" content="([0-9a-f]+)">',
                      (directory / "report.html").read_text())
    md = re.findall(r", run ([0-9a-f]+)", (directory / "report.md").read_text())
    return {report["run"]["id"], *html, *md}


@contextmanager
def _mounted_tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- the directory, checked before anything runs --------------------------------------------


def _assert_refused_up_front(ran, *needles: str) -> None:
    assert ran.ret == 3, ran.output
    assert "Traceback" not in ran.output
    assert "passed" not in ran.stdout and "failed" not in ran.stdout   # nothing ran
    (line,) = ran.stderr.strip().splitlines()                          # one clear line
    for needle in needles:
        assert needle in line, line


def test_a_report_path_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    (tmp_path / "out").write_text("not a directory\n")
    ran = _kit_run(tmp_path, tmp_path / "out")
    _assert_refused_up_front(ran, "kit run:", str(tmp_path / "out"), "not a directory")
    assert (tmp_path / "out").read_text() == "not a directory\n"


def test_a_report_dir_that_cannot_be_created_is_refused(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    (tmp_path / "file").write_text("")
    ran = _kit_run(tmp_path, tmp_path / "file" / "out")
    _assert_refused_up_front(ran, "cannot create report directory", "Not a directory")


def test_a_read_only_report_dir_is_refused(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    with _mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        ran = _kit_run(tmp_path, ro)
        _assert_refused_up_front(ran, f"report directory {ro} is not writable",
                                 "Read-only file system")
        ran = _kit_run(tmp_path, ro / "report")
        _assert_refused_up_front(ran, "cannot create report directory",
                                 "Read-only file system")


def test_a_second_run_into_a_locked_dir_names_the_holder_and_touches_nothing(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    report = tmp_path / "out"
    assert _kit_run(tmp_path, report).ret == 0
    before = _snapshot(report)
    with ReportLock(report, "kit run"):
        ran = _kit_run(tmp_path, report)
    _assert_refused_up_front(ran, f"report directory {report} is in use by pid {os.getpid()}",
                             "(kit run)")
    assert _snapshot(report) == before


# -- a set is whole or absent -----------------------------------------------------------------


def test_a_run_replaces_the_whole_set_and_no_older_file_survives(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    report = tmp_path / "out"
    report.mkdir()
    for name in ("bench.json", "junit.xml", "report.html"):
        (report / name).write_text("from an earlier run\n")
    ran = _kit_run(tmp_path, report)
    assert ran.ret == 0, ran.output
    assert not (report / "bench.json").exists()      # not measured by this run
    assert "from an earlier run" not in (report / "junit.xml").read_text()
    assert len(_run_ids(report)) == 1                 # json, md and html: one run
    assert ran.report["partial"] is False
    assert _debris(report) == []


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path

from kit.report.reportset import Staging

directory, kill_at = Path(sys.argv[1]), int(sys.argv[2])
real_replace, calls = os.replace, [0]

def replace(src, dst):
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    calls[0] += 1
    return real_replace(src, dst)

os.replace = replace
staging = Staging(directory)
for name in ("report.json", "report.md", "report.html", "junit.xml"):
    staging.write(name, "new\\n")
staging.commit(".")
print(calls[0])
"""


def test_a_writer_killed_at_any_point_leaves_the_old_set_or_the_new_one(tmp_path):
    """SIGKILL at every rename the writer makes (staging each file, the marker, the swap):
    after the next writer's recovery the directory holds one whole set, never a mix."""
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    old = {name: "old\n" for name in REPORT_FILES}
    new = {name: "new\n" for name in REPORT_FILES if name != "bench.json"}
    outcomes = set()
    for kill_at in range(40):
        report = tmp_path / f"r{kill_at}"
        report.mkdir()
        for name, text in old.items():
            (report / name).write_text(text)
        done = subprocess.run([sys.executable, str(script), str(report), str(kill_at)],
                              capture_output=True, text=True, timeout=60, env=_env(),
                              check=False)
        with ReportLock(report):
            recover(report)
        files = {p.name: p.read_text() for p in report.iterdir()
                 if p.is_file() and not p.name.startswith(".kit.lock")}
        assert files in (old, new), (kill_at, files)
        assert _debris(report) == [], kill_at
        outcomes.add("old" if files == old else "new")
        if done.returncode == 0:      # the writer made fewer renames than kill_at: finished
            assert files == new
            break
        assert done.returncode == -signal.SIGKILL, done.stderr
    else:
        pytest.fail("the writer never finished")
    assert outcomes == {"old", "new"}   # killed both before and during the swap


# -- partial runs -------------------------------------------------------------------------------


def _start_kit_run(root: Path, report: Path, log: Path) -> subprocess.Popen:
    out = log.open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "kit", "run", "--specs", str(root / "specs"), "--report",
             str(report), "-n", "0", "-v"], cwd=root, stdout=out, stderr=subprocess.STDOUT,
            env=_env())
    finally:
        out.close()


def _interrupt_during_slow(proc: subprocess.Popen, log: Path, signum: int) -> int:
    deadline = time.monotonic() + 120
    while "x.trust.good PASSED" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"the first behaviour never passed:\n{log.read_text()}"
        time.sleep(0.1)
    time.sleep(0.5)          # now inside x.trust.slow's 20 s read
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_is_partial_and_keeps_the_complete_report(tmp_path, signum):
    write_spec(tmp_path, spec_text(GOOD, SLOW, LATER))
    report = tmp_path / "out"
    complete = _kit_run(tmp_path, report, "-k", "good or later")
    assert complete.ret == 0 and complete.report["partial"] is False, complete.output
    before = _snapshot(report)

    log = tmp_path / "run.log"
    code = _interrupt_during_slow(_start_kit_run(tmp_path, report, log), log, signum)
    out = log.read_text()
    assert code == 2, out
    assert _snapshot(report) == before                     # the complete report stayed
    partial = json.loads((report / "partial" / "report.json").read_text())
    reason = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated by SIGTERM"
    assert partial["partial"] is True and partial["partial_reason"] == reason
    assert partial["not_run"] == 2
    assert partial["not_run_ids"] == ["x.trust.later", "x.trust.slow"]
    assert [b["id"] for b in partial["behaviours"]] == ["x.trust.good"]
    banner = f"Partial run: {reason}; 2 selected behaviour(s) were not run"
    assert banner in (report / "partial" / "report.md").read_text()
    assert 'class="partial-banner"' in (report / "partial" / "report.html").read_text()
    assert banner in (report / "partial" / "report.html").read_text()
    assert f"PARTIAL RUN: {reason}; 2 selected behaviour(s) were not run" in out
    assert f"the complete report in {report} was kept" in out
    assert _debris(report) == [] and _debris(report / "partial") == []


def test_an_exitfirst_run_is_partial_and_a_complete_run_clears_it(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, WRONG, LATER))
    report = tmp_path / "out"
    first = _kit_run(tmp_path, report, "-x")      # nothing to keep: it goes into out/ itself
    assert first.ret == 1, first.output
    assert first.report["partial"] is True
    assert first.report["partial_reason"] == "stopped at the first failure (-x)"
    assert first.report["not_run_ids"] == ["x.trust.later"]
    assert "PARTIAL RUN: stopped at the first failure (-x)" in first.stdout
    assert "Partial run:" in (report / "report.md").read_text()

    whole = _kit_run(tmp_path, report)
    assert whole.ret == 1 and whole.report["partial"] is False, whole.output
    again = _kit_run(tmp_path, report, "-x", "--json")
    summary = json.loads(again.stdout)
    assert summary["partial"] is True and summary["report_dir"] == str(report / "partial")
    assert summary["kept_report_dir"] == str(report)
    assert summary["partial_reason"] == "stopped at the first failure (-x)"
    assert (report / "partial" / "report.json").exists()
    assert _kit_run(tmp_path, report, "-k", "good").ret == 0   # complete again
    assert not (report / "partial").exists()     # a stale partial report goes with it


# -- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_keeps_the_previous_report_and_exits_2(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, LATER))
    with _mounted_tmpfs(tmp_path / "small", "size=1m") as disk:
        report = disk / "report"
        assert _kit_run(tmp_path, report, "-k", "good").ret == 0
        before = _snapshot(report)
        with (disk / "filler").open("wb") as filler:  # fill it up, then leave 4 KiB
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        with (disk / "filler").open("r+b") as filler:
            filler.truncate(max(0, os.path.getsize(disk / "filler") - 4096))
        ran = _kit_run(tmp_path, report)
        assert ran.ret == 2, ran.output
        assert "Traceback" not in ran.output
        assert f"kit: could not write the report into {report}: No space left on device" \
            in ran.stdout
        assert "the previous report was kept" in ran.stdout
        assert _snapshot(report) == before
        assert _debris(report) == []


def test_a_session_timeout_ends_a_partial_run_that_exits_2(tmp_path):
    """pytest-timeout's --session-timeout stops between behaviours: the ones left are
    counted as not run, and the exit code does not claim the suite conforms."""
    write_spec(tmp_path, spec_text(GOOD, LATER))
    ran = _kit_run(tmp_path, tmp_path / "out", "--", "--session-timeout", "0.01")
    assert ran.ret == 2, ran.output
    report = ran.report
    assert report["partial"] is True and report["not_run_ids"] == ["x.trust.later"]
    assert report["partial_reason"].startswith("stopped early: session-timeout")
    assert [b["status"] for b in report["behaviours"]] == ["conforms"]


def test_the_plugin_alone_refuses_an_unusable_report_dir_as_a_usage_error(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    (tmp_path / "out").write_text("")
    ran = run_python(["-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider", "-q",
                      "--rootdir", str(tmp_path), "--kit-report", str(tmp_path / "out"),
                      str(tmp_path / "specs")], cwd=tmp_path)
    assert ran.ret == 4, ran.output              # pytest's own usage-error code
    assert f"report directory {tmp_path / 'out'} is not a directory" in ran.stderr
    assert "Traceback" not in ran.output


def test_a_filesystem_that_cannot_lock_warns_and_still_writes(tmp_path, monkeypatch, capsys):
    """A VM target's 9p share may refuse flock: the run must still leave its report."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with ReportLock(tmp_path) as lock:
        assert lock.acquired
    assert "cannot lock" in capsys.readouterr().err


KILLED_RUN = """
import os, signal, sys
from pathlib import Path

from kit import cli

report = Path(sys.argv[1]).resolve()
real_replace = os.replace

def replace(src, dst):
    if Path(dst).resolve() == report / "report.md":   # the swap is half done
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

os.replace = replace
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_run_killed_in_the_middle_of_its_swap_is_finished_by_the_next_reader(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, LATER))
    report = tmp_path / "out"
    assert _kit_run(tmp_path, report, "-k", "good").ret == 0
    old_id = json.loads((report / "report.json").read_text())["run"]["id"]
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    killed = run_python([str(script), str(report), "run", "--specs", str(tmp_path / "specs"),
                         "--report", str(report), "-n", "0"], cwd=tmp_path)
    assert killed.ret == -signal.SIGKILL, killed.output
    assert len(_run_ids(report)) == 2          # html new, json old: mid-swap, for now
    listed = run_kit(tmp_path, "list", "--specs", str(tmp_path / "specs"), "--report",
                     str(report), "--json")
    assert listed.ret == 0, listed.output
    assert {r["id"]: r["last_status"] for r in json.loads(listed.stdout)} == {
        "x.trust.good": "conforms", "x.trust.later": "conforms"}   # the new run's verdicts
    (run_id,) = _run_ids(report)
    assert run_id != old_id
    assert _debris(report) == []
