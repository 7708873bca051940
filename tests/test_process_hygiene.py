"""Process hygiene: no forked checker outlives the run that forked it, however that run
ends; time run out is blamed on the target only when a target call was running; a thread
that cannot start says so.

The hangs are real: an LD_PRELOAD library built here makes read(2) on an eventfd sleep in
pause() forever (returning to it after every signal), or once (then failing with EINTR, as
an interruptible blocking read would).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import _env, behaviour, build_hang_shim, load_one, spec_text, write_spec

from kit.adapter.process import run_forked
from kit.engine.runner import check_isolated, check_with_leak_check
from kit.engine.target import Target
from kit.engine.warmup import warm_up

HANGS = behaviour("hang.read.forever", """
steps:
  - eventfd: {initval: 1, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    expect: {value: 1}
""")


@pytest.fixture(scope="module")
def shims(tmp_path_factory, cc) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("shims")
    return {name: build_hang_shim(cc, out, interruptible=name == "interruptible")
            for name in ("forever", "interruptible")}


# -- no checker outlives its parent -------------------------------------------------------------


def _marked(mark: str) -> dict[int, int]:
    """pid -> parent pid of every live process whose environment carries `mark`."""
    found = {}
    needle = f"KIT_HYGIENE_MARK={mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if needle not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue            # gone meanwhile, or a zombie (no environment left)
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found[int(entry)] = int(fields[1])
    return found


def _wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return condition()


WAYS_OUT = {
    # pytest-timeout's signal method raises in the main thread, its thread method calls
    # os._exit; Ctrl-C; a polite and an impolite kill.
    # (generous: the first item also warms the kit up, slowly on a loaded machine)
    "pytest-timeout signal": (["--timeout", "20", "--timeout-method", "signal"], None),
    "pytest-timeout thread": (["--timeout", "20", "--timeout-method", "thread"], None),
    "SIGINT": ([], signal.SIGINT),
    "SIGTERM": ([], signal.SIGTERM),
    "SIGKILL": ([], signal.SIGKILL),
}


@pytest.mark.parametrize("way", sorted(WAYS_OUT))
def test_no_checker_outlives_its_parent(way, shims, tmp_path):
    write_spec(tmp_path, spec_text(HANGS))
    mark = uuid.uuid4().hex
    env = dict(_env(), LD_PRELOAD=str(shims["forever"]), KIT_HYGIENE_MARK=mark)
    extra, signum = WAYS_OUT[way]
    # The step bound and the limit are far away: only the way out can end the checker.
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
         "-p", "no:randomly", "--rootdir", str(tmp_path), "-n", "0",
         "--kit-step-bound", "300", "--kit-limit", "600", *extra, str(tmp_path / "specs")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        checker = _wait_for(lambda: [p for p, pp in _marked(mark).items() if pp == inner.pid],
                            90)
        if not checker:
            inner.kill()
            pytest.fail(f"the checker never started:\n{inner.communicate(timeout=30)[0]}")
        if signum is not None:
            time.sleep(0.5)         # inside the hanging read by now
            inner.send_signal(signum)
        output = inner.communicate(timeout=60)[0].decode(errors="replace")
        if way.startswith("pytest-timeout"):
            assert "Timeout" in output, output[-3000:]
        left = _wait_for(lambda: not _marked(mark), 10) or _marked(mark)
        assert left is True, f"left behind after {way}: {left}"
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait(10)
        for pid in _marked(mark):       # never leave the hang running, even on failure
            os.kill(pid, signal.SIGKILL)


# -- the target's time against the kit's ----------------------------------------------------


SLOW_IN_THE_KIT = behaviour("slow.in.the.kit", """
steps:
  - eventfd: {initval: 0, flags: EFD_NONBLOCK}
    as: efd
  - sleep: 5
""")


def test_the_kits_own_code_past_the_limit_is_a_kit_error_naming_where(target):
    # The time runs out in the kit's own code (a sleep step here; a runaway parser or
    # pattern alike), outside any call on the target: the limit blames the kit, and says
    # which frame it was in.
    verdict = check_isolated(load_one(spec_text(SLOW_IN_THE_KIT)), target, limit=2)
    assert verdict.status == "error", verdict.message
    assert verdict.message.startswith("kit error: the kit's own code ran past the limit")
    assert "(in File " in verdict.message and "interpreter.py" in verdict.message
    assert verdict.trace and "most recent call first" in verdict.trace[0]["traceback"]
    assert verdict.duration < 10


def test_a_target_call_past_its_bound_is_a_timeout_of_that_call(shims, tmp_path):
    write_spec(tmp_path, spec_text(HANGS))
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
         "-p", "no:randomly", "--rootdir", str(tmp_path), "-n", "0", "--kit-report",
         str(report), "--kit-step-bound", "0.5", "--kit-limit", "60", str(tmp_path / "specs")],
        cwd=tmp_path, env=dict(_env(), LD_PRELOAD=str(shims["forever"])),
        capture_output=True, text=True, timeout=120, check=False)
    (verdict,) = json.loads((report / "report.json").read_text())["behaviours"]
    assert verdict["status"] == "timeout", proc.stdout[-2000:]
    assert "read_u64(fd=" in verdict["message"] and "watchdog" in verdict["message"]
    assert verdict["trace"][0]["call"].startswith("read_u64(")
    # killed about a second after the call's bound, not at the 60 s limit
    assert verdict["duration"] < 15


MODEL = """
behaviours:
  - id: model.eventfd.epoll
    title: eventfd programs against the model
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "a sentence"}
    model: eventfd_epoll
"""


@pytest.mark.parametrize("shim", ["interruptible", "forever"])
def test_a_model_program_call_that_hangs_is_a_timeout_not_a_disagreement(shim, shims,
                                                                        tmp_path):
    write_spec(tmp_path, MODEL)
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
         "-p", "no:randomly", "--rootdir", str(tmp_path), "-n", "0", "--kit-report",
         str(report), "--kit-step-bound", "0.5", "--kit-limit", "60", str(tmp_path / "specs")],
        cwd=tmp_path, env=dict(_env(), LD_PRELOAD=str(shims[shim])),
        capture_output=True, text=True, timeout=180, check=False)
    (verdict,) = json.loads((report / "report.json").read_text())["behaviours"]
    assert verdict["status"] == "timeout", proc.stdout[-3000:]
    assert "read(file=e" in verdict["message"], verdict["message"]
    assert verdict["trace"][-1]["status"] == "timeout"
    assert verdict["duration"] < 20


# -- a thread that cannot start -------------------------------------------------------------


THREADED = behaviour("thread.cannot.start", """
steps:
  - eventfd: {initval: 0, flags: EFD_NONBLOCK}
    as: efd
  - in_thread:
      steps:
        - write_u64: {fd: $efd, value: 1}
    as: writer
  - join: writer
""")


def _check_without_threads(text: str) -> dict:
    warm_up()                       # while the interpreter's files are still readable
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))   # no new thread or process
    return check_with_leak_check(load_one(text), Target.current()).as_dict()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become a user with no processes")
def test_a_thread_that_cannot_start_is_reported_as_such():
    status, verdict = run_forked(lambda: _check_without_threads(spec_text(THREADED)), 60)
    assert status == "ok", verdict
    assert verdict["status"] == "error"
    assert "could not start thread writer" in verdict["message"], verdict["message"]
    assert "can't start new thread" in verdict["message"]
    assert not verdict["message"].startswith("the kit leaked")
