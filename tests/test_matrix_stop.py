"""A matrix run stopped by SIGTERM, SIGHUP or Ctrl-C takes every process it started down
with it (kit.matrix.children) and still merges what finished; a timeout kills a target's
whole process group, not only its first process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kit.matrix import children

REPO = Path(__file__).resolve().parent.parent

# A matrix of two targets: `quick` finishes at once with a report; `slow` starts a shell
# whose child sleeps for a minute (its pid written down), as a VM or a chroot would run.
SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from kit.matrix import children
    from kit.matrix.base import RunResult, Target
    from kit.matrix.runner import run_matrix

    out, pidfile = Path(sys.argv[1]), sys.argv[2]

    class Quick(Target):
        kind = "host"
        def unavailable(self):
            return None
        def run(self, request):
            report = request.out_dir / "report.json"
            request.out_dir.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps({"target": {}, "behaviours": []}))
            return RunResult(self.name, "ran", report=report, exit_code=0)

    class Slow(Quick):
        def run(self, request):
            children.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=120)
            return RunResult(self.name, "failed", "ended")

    with children.stop_on_signals():
        run_matrix([Quick("quick", {}), Slow("slow", {})], repo=Path.cwd(), out=out,
                   kit_args=[], jobs=2)
    """)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie left for init to reap counts as gone
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def _until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"),
                                       (signal.SIGINT, "Ctrl-C")])
def test_a_stopped_matrix_leaves_no_process_and_merges_what_finished(tmp_path, sig, name):
    out, pidfile = tmp_path / "out", tmp_path / "sleeper.pid"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), str(pidfile)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        _until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the slow target ran")
        sleeper = int(pidfile.read_text())
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=children.GRACE + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, output
    assert f"stopping ({name}): ending every target's processes" in output
    _until(lambda: not _alive(sleeper), "the slow target's grandchild is gone", 5)
    merged = {t["name"]: t for t in json.loads((out / "matrix.json").read_text())["targets"]}
    assert merged["quick"]["status"] == "ran"
    assert merged["slow"]["status"] == "failed"
    assert merged["slow"]["reason"] == f"stopped ({name}) before it finished"


def test_a_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "sleeper.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        children.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1)
    _until(lambda: not _alive(int(pidfile.read_text())), "the grandchild is gone", 5)


def test_nothing_starts_once_the_run_is_stopping(monkeypatch):
    monkeypatch.setattr(children, "_stopping", type(children._stopping)())
    children.stop_all()
    with pytest.raises(children.Stopped, match="the run is stopping: true"):
        children.start(["true"])
