"""Timing claims hold on a busy machine, and a wrong answer still fails there.

A CI runner is shared: between two steps a thread may wait tens of milliseconds for a CPU.
The kit copes in three ways, each tested here: wakers wait for the waiter to block
(`when_blocked`, `wait_blocked`); `returns_within` leaves out the time a thread was ready
to run but had no CPU; timer waits are bounded from the arming (`timerfd_elapsed`). The
last test runs the whole spec suite oversubscribed beside CPU hogs and expects no
deviation a quiet run would not report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from helpers import (
    REPO,
    SUBPROCESS_TIMEOUT,
    behaviour,
    line_of,
    load,
    run_one,
    run_python,
    spec_text,
)

from kit.adapter.libc import Result
from kit.adapter.proc import run_queue_wait
from kit.engine import expectations
from kit.engine.interpreter import CONFORMS, DEVIATES
from kit.spec.errors import SpecError

HOG = "while True: pass"


@contextmanager
def cpu_hogs(count: int, cpus: set[int] | None = None):
    """`count` busy processes (on `cpus` if given), killed and reaped however the body ends."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", HOG]))
            if cpus:
                os.sched_setaffinity(procs[-1].pid, cpus)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


@contextmanager
def pinned(cpus: set[int]):
    """This process on `cpus` only, put back afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- wait_blocked is checked when the spec loads --------------------------------------------


def _steps(body: str) -> str:
    return spec_text(behaviour("x.wait.blocked", "    steps:\n" + body))


@pytest.mark.parametrize("body, marker, field, message", [
    ("      - eventfd: {}\n        as: efd\n      - wait_blocked: ghost\n",
     "wait_blocked: ghost", "steps[1].wait_blocked",
     "wait_blocked names 'ghost', which is not a running in_thread"),
    (("      - eventfd: {}\n        as: efd\n"
      "      - in_thread: {steps: [{read_u64: {fd: $efd}}]}\n        as: reader\n"
      "      - join: reader\n      - wait_blocked: [reader]\n"),
     "wait_blocked: [reader]", "steps[3].wait_blocked",
     "wait_blocked names 'reader', which is not a running in_thread"),
    (("      - eventfd: {}\n        as: efd\n"
      "      - in_thread: {steps: [{read_u64: {fd: $efd}}]}\n        as: reader\n"
      "      - wait_blocked: reader\n        expect: {returns: 0}\n      - join: reader\n"),
     "expect: {returns: 0}", "steps[2]", "wait_blocked produces nothing to expect"),
], ids=["unknown thread", "thread already joined", "an expectation"])
def test_a_bad_wait_blocked_names_file_line_and_field(body, marker, field, message):
    text = _steps(body)
    result = load(text)
    (error,) = result.errors
    assert isinstance(error, SpecError)
    assert error.line == line_of(text, marker), str(error)
    assert message in str(error)
    assert error.file == "specs/x/t.yaml" and error.behaviour == "x.wait.blocked"
    assert error.field == field


def test_wait_blocked_takes_one_name_or_a_list():
    text = _steps("      - eventfd: {}\n        as: efd\n"
                  "      - in_thread: {steps: [{read_u64: {fd: $efd}}]}\n        as: r1\n"
                  "      - in_thread: {steps: [{read_u64: {fd: $efd}}]}\n        as: r2\n"
                  "      - wait_blocked: r1\n      - wait_blocked: [r1, r2]\n"
                  "      - write_u64: {fd: $efd, value: 2}\n      - join: r1\n      - join: r2\n")
    result = load(text)
    assert not result.errors, [str(e) for e in result.errors]
    waits = [s for s in result.behaviours[0].steps if s.action == "wait_blocked"]
    assert [s.args for s in waits] == [["r1"], ["r1", "r2"]]


def test_wait_blocked_lets_the_waker_act_only_once_every_waiter_sleeps(no_leaks):
    """Two readers, each to get one semaphore count: the waker writes once both wait, so
    each read blocked for at least the waker's sleep, whatever the scheduler did."""
    reader = ("- in_thread:\n    steps:\n      - read_u64: {fd: $efd}\n"
              "        expect: {value: 1, blocks: {at_least: 0.05}}\n  as: %s\n")
    text = spec_text(behaviour("x.wait.both", "    steps:\n" + "\n".join(
        "      " + line for line in (
            "- eventfd: {initval: 0, flags: EFD_SEMAPHORE}\n  as: efd\n"
            + reader % "r1" + reader % "r2"
            + "- wait_blocked: [r1, r2]\n- sleep: 0.06\n- write_u64: {fd: $efd, value: 2}\n"
              "- join: r1\n- join: r2\n").splitlines())))
    with cpu_hogs(2):
        outcome = run_one(text, bound=5.0)
    assert outcome.status == CONFORMS, outcome.trace()


# -- returns_within: the time a thread had no CPU is load, not blocking ----------------------


def test_returns_within_leaves_out_the_time_spent_waiting_for_a_cpu():
    late = Result(ret=8, duration=1.2, queued=1.1)
    assert expectations.check({"returns_within": 0.5}, late, {}) == []


def test_returns_within_still_fails_a_call_that_waited_for_something_else():
    slow = Result(ret=8, duration=1.2, queued=0.1)
    (message,) = expectations.check({"returns_within": 0.5}, slow, {})
    assert message == ("expected the call to return within 0.5s, it took 1.2000s, "
                       "0.1000s of it waiting for a CPU")


@pytest.mark.skipif(run_queue_wait(threading.get_native_id()) is None,
                    reason="this kernel keeps no schedstat run_delay")
def test_the_time_a_busy_cpu_keeps_a_thread_waiting_is_measured():
    me = threading.get_native_id()
    cpu = min(os.sched_getaffinity(0))
    with pinned({cpu}), cpu_hogs(1, {cpu}):
        before = run_queue_wait(me)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # share the CPU with the hog
            pass
        waited = run_queue_wait(me) - before
    assert waited > 0.01, f"only {waited:.4f}s waiting for a CPU beside a busy loop"


def test_a_call_that_blocks_fails_returns_within_even_on_a_busy_cpu(no_leaks):
    """Blocked time is not run-queue time: a read released after 0.3 s, on a CPU shared
    with a busy loop, still breaks a 0.05 s bound."""
    text = spec_text(behaviour("x.within.busy", "    steps:\n" + "\n".join(
        "      " + line for line in (
            "- eventfd: {initval: 0}\n  as: efd\n"
            "- in_thread: {when_blocked: true, after: 0.3,"
            " steps: [{write_u64: {fd: $efd, value: 7}}]}\n  as: writer\n"
            "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns_within: 0.05}\n"
            "- join: writer\n").splitlines())))
    cpu = min(os.sched_getaffinity(0))
    with pinned({cpu}), cpu_hogs(1, {cpu}):
        outcome = run_one(text, bound=5.0)
    assert outcome.status == DEVIATES, outcome.trace()
    assert outcome.message.startswith(f"line {line_of(text, '# CHECK')}: ")
    assert "expected the call to return within 0.05s, it took 0." in outcome.message


# -- the whole suite, oversubscribed beside CPU hogs -----------------------------------------

# Workers per core: the issue's `kit run -n 6` on 2 cores. Capped so a large CI machine does
# not start hundreds of workers; the hogs still take every core.
OVERSUBSCRIBE, MAX_WORKERS = 3, 24


@pytest.mark.timeout(900)  # about a minute here; the bound is for a machine far busier
def test_the_whole_suite_under_load_reports_no_deviation_a_quiet_run_would_not(tmp_path):
    """Known deviations are this kernel's own (they deviate in a quiet run too); anything
    else that deviates, times out or errs here is a timing claim that assumed an idle
    machine."""
    cores = len(os.sched_getaffinity(0))
    workers = min(OVERSUBSCRIBE * cores, MAX_WORKERS)
    report = tmp_path / "report"
    with cpu_hogs(cores):
        ran = run_python(["-m", "kit", "run", "-n", str(workers), "--report", str(report)],
                         cwd=REPO, report_dir=report, timeout=max(SUBPROCESS_TIMEOUT, 600))
    assert ran.ret in (0, 1), ran.output[-3000:]
    verdicts = ran.report["behaviours"]
    assert len(verdicts) > 300, ran.output[-3000:]
    unexpected = [f"{v['id']}: {v['status']}: {v['message']}" for v in verdicts
                  if v["status"] not in ("conforms", "not applicable", "untestable")
                  and not (v["status"] == "deviates" and v.get("known_deviation"))]
    assert not unexpected, "\n".join(unexpected)


def test_the_hogs_are_gone_when_the_body_fails():
    with pytest.raises(RuntimeError), cpu_hogs(2) as procs:
        raise RuntimeError("the body failed")
    assert all(proc.poll() == -signal.SIGKILL for proc in procs)


# -- a waker held back past the waiters' timeouts: not judged, run again ------------------

ET_TALLY = """
    steps:
      - epoll_create1: {}
        as: ep
      - eventfd: {flags: EFD_NONBLOCK}
        as: efd
      - eventfd: {flags: EFD_NONBLOCK}
        as: tally
      - epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd, events: [EPOLLIN, EPOLLET], data: 1}
      - in_thread:
          steps:
            - epoll_wait: {epfd: $ep, maxevents: 4, timeout: 100, by: count}
              within: 5
              as: got
            - write_u64: {fd: $tally, value: $got}
        as: waiter
      - wait_blocked: [waiter]
      - write_u64: {fd: $efd, value: 1}
      - join: waiter
      - read_u64: {fd: $tally}
        expect: {value: 1}
"""


def _held_back(monkeypatch, times: int) -> list[int]:
    """The thread that runs the steps is descheduled for 0.3 s right after wait_blocked
    (past the waiter's 100 ms timeout), the first `times` times."""
    from kit.engine.interpreter import Run

    real, seen = Run._wait_blocked, []

    def slow(self, names):
        asleep = real(self, names)
        seen.append(1)
        if len(seen) <= times:
            time.sleep(0.3)
        return asleep

    monkeypatch.setattr(Run, "_wait_blocked", slow)
    return seen


def test_a_waker_held_back_past_the_waiters_timeout_is_not_judged(monkeypatch):
    _held_back(monkeypatch, 1)
    outcome = run_one(spec_text(behaviour("x.late", ET_TALLY)))
    assert outcome.status == "late", outcome.message
    assert "write_u64 began after 1 of the threads wait_blocked saw asleep had left their " \
           "call (it lasted 0.1" in outcome.message


def test_the_runner_runs_a_late_example_again(monkeypatch):
    from kit.engine.runner import check_behaviour
    from kit.engine.target import Target
    from helpers import load_one

    seen = _held_back(monkeypatch, 2)
    verdict = check_behaviour(load_one(spec_text(behaviour("x.late", ET_TALLY))),
                              Target.current())
    assert verdict.status == "conforms", verdict.message
    assert len(seen) == 3                        # twice late, then judged


def test_an_example_late_every_time_is_an_error_never_a_deviation(monkeypatch):
    from kit.engine.runner import LATE_TRIES, check_behaviour
    from kit.engine.target import Target
    from helpers import load_one

    _held_back(monkeypatch, 100)
    verdict = check_behaviour(load_one(spec_text(behaviour("x.late", ET_TALLY))),
                              Target.current())
    assert verdict.status == "error"
    assert verdict.message.startswith(f"not judged in {LATE_TRIES} runs of one example: ")
    assert "past the waiters' timeouts" in verdict.message


def test_a_waiter_whose_own_expectation_fails_is_still_reported(monkeypatch):
    # Held back too, but the waiter's own step fails (here it demands one event): that
    # deviation is the waiter's answer, reported as such, never voided as late.
    _held_back(monkeypatch, 1)
    text = ET_TALLY.replace("              within: 5\n              as: got",
                            "              within: 5\n              expect: {returns: 1}\n"
                            "              as: got")
    outcome = run_one(spec_text(behaviour("x.late", text)))
    assert outcome.status == DEVIATES, outcome.message
    assert "expected a return of 1" in outcome.message
