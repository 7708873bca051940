"""A pytest plugin the benchmark loads into `kit run` (PYTEST_PLUGINS=kit_bench_probe) to
count what the run did, without changing the kit: Hypothesis examples, spec steps, time
spent in fixed sleeps, and where each process's wall time went.

It only wraps functions (module attributes looked up at call time), passing every
argument through unchanged, so the kit runs its normal code paths. Every process (the controller, each xdist worker and each forked
checker) appends JSON lines to the file named by $KIT_BENCH_PROBE, one line per event,
with a single O_APPEND write so lines from concurrent processes never interleave.

Events:
  start       the probe was imported (pytest has started, plugins are loading)
  collected   collection finished (spec files loaded and validated)
  warmup      kit.engine.warmup.warm_up() ran in this process (seconds)
  behaviour   one behaviour checked in its forked child: examples, steps, sleeps, seconds
  isolated    the same behaviour seen from the parent: fork + child + result transfer
  finish      the session ended
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time

PATH = os.environ.get("KIT_BENCH_PROBE")
FIXED_SLEEP = 0.005  # sleeps at least this long are fixed delays, shorter ones are polling

_lock = threading.Lock()
_counts: dict = {}


def _reset() -> None:
    with _lock:
        _counts.clear()
        _counts.update(examples=0, model_examples=0, steps=0, blocking_steps=0,
                       sleep_fixed=0.0, sleep_fixed_n=0, sleep_poll=0.0, sleep_poll_n=0,
                       sleep_fixed_main=0.0, run_s=0.0, guard_s=0.0, in_child_n=0,
                       in_child_s=0.0, ops={})


def _add_op(name: str, seconds: float, main: bool) -> None:
    with _lock:
        entry = _counts.setdefault("ops", {}).setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += seconds
        if main:
            entry[2] += seconds


def _add(key: str, amount=1) -> None:
    with _lock:
        _counts[key] = _counts.get(key, 0) + amount


def emit(event: str, **fields) -> None:
    if not PATH:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
    fd = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class _TimeProxy:
    """Stands in for the `time` module inside kit.engine.interpreter: sleeps are timed."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def sleep(self, seconds):
        start = self._real.monotonic()
        try:
            self._real.sleep(seconds)
        finally:
            spent = self._real.monotonic() - start
            kind = "fixed" if seconds >= FIXED_SLEEP else "poll"
            _add(f"sleep_{kind}", spent)
            _add(f"sleep_{kind}_n")
            if kind == "fixed" and threading.current_thread() is threading.main_thread():
                _add("sleep_fixed_main", spent)


def _install() -> None:
    from kit import plugin
    from kit.engine import interpreter as interp
    from kit.engine import runner, warmup
    from kit.registry import OPERATIONS

    _reset()

    outcome = interp.Run.outcome

    def counted_outcome(self, *args, **kw):
        _add("examples")
        start = time.perf_counter()
        try:
            return outcome(self, *args, **kw)
        finally:
            _add("run_s", time.perf_counter() - start)

    interp.Run.outcome = counted_outcome
    interp.time = _TimeProxy(time)

    def counting(name, fn, blocking):
        def wrapper(*args, **kw):
            _add("steps")
            if blocking:
                _add("blocking_steps")
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                _add_op(name, time.perf_counter() - start,
                        threading.current_thread() is threading.main_thread())
        return wrapper

    for name, op in list(OPERATIONS.items()):
        OPERATIONS[name] = dataclasses.replace(op, fn=counting(name, op.fn, op.blocking))

    bounded = interp.bounded

    @contextlib.contextmanager
    def timed_bounded(*args, **kw):
        # The guard's own cost: entering and leaving it, not the call it guards.
        start = time.perf_counter()
        with bounded(*args, **kw) as guard:
            entered = time.perf_counter()
            try:
                yield guard
            finally:
                leaving = time.perf_counter()
        _add("guard_s", (entered - start) + (time.perf_counter() - leaving))

    interp.bounded = timed_bounded

    forked = interp.run_forked

    def timed_run_forked(*args, **kw):
        start = time.perf_counter()
        try:
            return forked(*args, **kw)
        finally:
            _add("in_child_n")
            _add("in_child_s", time.perf_counter() - start)

    interp.run_forked = timed_run_forked

    try:
        from kit.model.machine import EventfdEpollMachine
    except ImportError:  # pragma: no cover - no model in this version of the kit
        pass
    else:
        teardown = EventfdEpollMachine.teardown

        def counted_teardown(self, *args, **kw):
            _add("model_examples")
            return teardown(self, *args, **kw)

        EventfdEpollMachine.teardown = counted_teardown

    inner = runner.check_with_leak_check

    def probed_check(behaviour, *args, **kw):
        _reset()
        start = time.monotonic()
        try:
            return inner(behaviour, *args, **kw)
        finally:
            with _lock:
                counts = json.loads(json.dumps(_counts))
            emit("behaviour", id=behaviour.id, seconds=time.monotonic() - start, **counts)

    runner.check_with_leak_check = probed_check
    plugin.check_with_leak_check = probed_check

    isolated = plugin.check_isolated

    def probed_isolated(behaviour, *args, **kw):
        start = time.monotonic()
        try:
            return isolated(behaviour, *args, **kw)
        finally:
            emit("isolated", id=behaviour.id, seconds=time.monotonic() - start)

    plugin.check_isolated = probed_isolated

    warm = warmup.warm_up

    def probed_warm_up(*args, **kw):
        start = time.monotonic()
        try:
            return warm(*args, **kw)
        finally:
            emit("warmup", seconds=time.monotonic() - start)

    warmup.warm_up = probed_warm_up


if PATH:
    _install()
    emit("start")


def pytest_collection_finish(session):
    emit("collected", items=len(session.items))


def pytest_sessionfinish(session, exitstatus):
    emit("finish", exitstatus=int(exitstatus))
