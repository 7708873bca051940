"""Where a VM target's time goes: the guest's marks (guest_phases.py), the split
(phases.py) and the summary line and matrix.json (runner.py), without booting a VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from kit.matrix import phases
from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.runner import Progress, outcome_line, run_matrix

MARKS = {"up": 3.96, "kit start": 4.54, "imported": 28.34, "collected": 98.62,
         "tested": 640.0, "kit exit": 655.5}


def test_the_guests_uptimes_become_phases():
    split = phases.split(MARKS, prepare=3.04, boot=5.2, shutdown=0.4)
    assert split == {"prepare": 3.0, "boot": 5.2, "setup": 0.6, "python": 23.8,
                     "collect": 70.3, "suite": 541.4, "report": 15.5, "shutdown": 0.4}


def test_a_run_that_stopped_early_has_the_phases_it_reached():
    # /init started kit run, which never got its imports done (a broken venv, a timeout)
    assert phases.split({"up": 3.0, "kit start": 4.0}, boot=5.0) == {"boot": 5.0,
                                                                       "setup": 1.0}
    # a mark out of order (a second guest's line, a clock step) makes no negative phase
    assert "python" not in phases.split({"kit start": 9.0, "imported": 8.0})


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (42, "42s"), (59.6, "1m00s"),
                                           (190, "3m10s"), (3725, "1h02m")])
def test_durations_read_like_a_person_writes_them(seconds, text):
    assert phases.seconds_text(seconds) == text


def test_the_summary_names_the_main_phases_and_any_other_that_took_long():
    split = phases.split(MARKS, prepare=3.0, boot=25.0, shutdown=0.4)
    assert phases.summary(split) == ("boot 25s, python 24s, collect 1m10s, suite 9m01s, "
                                     "report 16s")
    assert phases.summary({**split, "prepare": 95.0}).startswith("prepare 1m35s, boot 25s")
    assert phases.summary({}) == ""


def test_the_summary_line_carries_the_split():
    result = RunResult("debian-6.12", "ran", duration=190.0,
                       metadata={"phases": {"boot": 25.0, "python": 40.0, "suite": 125.0}})
    assert outcome_line(result) == "ran (3m10s: boot 25s, python 40s, suite 2m05s)"
    result.metadata["qemu_cpu_seconds"] = 290.4
    assert outcome_line(result) == ("ran (3m10s: boot 25s, python 40s, suite 2m05s; "
                                    "4m50s of CPU)")
    # a target without phases (the host, a container) keeps its plain duration
    assert outcome_line(RunResult("host", "ran", duration=35.2)) == "ran (35s)"
    failed = RunResult("debian-6.1", "failed", "the VM did not boot", duration=91)
    assert outcome_line(failed) == "failed: the VM did not boot (1m31s)"


class _Timed(Target):
    """A target that reports phases, and remembers the CPUs it was given."""

    kind = "fake"
    seen: typing.ClassVar[dict[str, int]] = {}

    def unavailable(self):
        return None

    def run(self, request: RunRequest) -> RunResult:
        _Timed.seen[self.name] = request.cpus
        return RunResult(self.name, "failed", "no report on purpose", duration=70.0,
                         metadata={"phases": {"boot": 10.0, "python": 20.0, "suite": 40.0}})


def test_the_matrix_prints_the_split_and_keeps_it_in_matrix_json(tmp_path, capsys):
    import io

    stream = io.StringIO()
    matrix = run_matrix([_Timed("vm", {})], repo=Path.cwd(), out=tmp_path / "m",
                        kit_args=[], progress=Progress(stream, every=3600))
    assert "vm: failed: no report on purpose (1m10s: boot 10s, python 20s, suite 40s)" \
        in stream.getvalue()
    written = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert written["targets"][0]["metadata"]["phases"] == {"boot": 10.0, "python": 20.0,
                                                           "suite": 40.0}
    assert matrix["targets"][0]["metadata"]["phases"]["suite"] == 40.0


def test_each_target_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    _Timed.seen.clear()
    run_matrix([_Timed("a", {})], repo=Path.cwd(), out=tmp_path / "one", kit_args=[],
               progress=Progress(io.StringIO(), every=3600))
    assert _Timed.seen == {"a": 4}                 # alone: the whole machine
    run_matrix([_Timed(n, {}) for n in "abc"], repo=Path.cwd(), out=tmp_path / "three",
               kit_args=[], progress=Progress(io.StringIO(), every=3600))
    assert _Timed.seen == {"a": 1, "b": 1, "c": 1}   # three at a time on four cores
    _Timed.seen.clear()
    run_matrix([_Timed(n, {}) for n in "ab"], repo=Path.cwd(), out=tmp_path / "two",
               kit_args=[], jobs=1, progress=Progress(io.StringIO(), every=3600))
    assert _Timed.seen == {"a": 4, "b": 4}         # one at a time: each gets all four


# -- the guest's plugin, in a real pytest session -----------------------------------------

SPEC = textwrap.dedent("""\
    def test_one():
        pass

    def test_two():
        pass
    """)


def _session(tmp_path: Path, *args: str, console: bool = True) -> tuple[list[str], str]:
    (tmp_path / "test_it.py").write_text(SPEC)
    console_file = tmp_path / "console"
    console_file.write_text("")
    env = dict(os.environ, PYTEST_PLUGINS="kit.matrix.guest_phases")
    env.pop("KIT_GUEST_CONSOLE", None)
    if console:
        env["KIT_GUEST_CONSOLE"] = str(console_file)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(tmp_path / "test_it.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return console_file.read_text().splitlines(), proc.stdout


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_guest_plugin_marks_each_phase_once_on_the_console(tmp_path, workers):
    lines, stdout = _session(tmp_path, "-n", workers)
    assert [line.split()[1] for line in lines] == ["imported", "collected", "tested",
                                                   "reported"]
    assert all(line.startswith("KIT-INIT: ") for line in lines)
    uptimes = [float(line.split()[2]) for line in lines]
    assert uptimes == sorted(uptimes)
    assert lines[1].split()[3] == "2"        # the number of items collected
    assert "KIT-INIT" not in stdout           # the console only, not pytest's output


def test_the_guest_plugin_is_silent_outside_a_guest(tmp_path):
    lines, _ = _session(tmp_path, "-n", "0", console=False)
    assert lines == []
