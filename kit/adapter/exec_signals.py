"""Signals across execve(2): a forked process makes signals pending on itself (blocked, so
they stay pending), then executes the kit's own probe program (kit/adapter/signal_probe.py),
which reports what it can read through a signalfd. fork(2) empties the child's pending
set, so the signals must be raised after the fork, in the very process that executes.

Only the fixed probe is executed, with integer arguments; the signals go only to the
forked process itself, and never the watchdog's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

from kit.adapter.libc import Result
from kit.adapter.process import collect_child
from kit.adapter.signalfd import _name
from kit.adapter.signals import parse_signals
from kit.adapter.watchdog import WATCHDOG_SIGNAL
from kit.registry import operation

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signal_probe.py")


def _interpreter() -> str | None:
    """A Python this user may execute: the kit's own, else the system's (the probe needs
    only the standard library). An unprivileged run may not reach an interpreter kept
    under root's home, for instance."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and os.access(os.path.realpath(candidate), os.X_OK):
            return candidate
    return None


def _numbers(spec) -> tuple[list[int], Result | None]:
    numbers, bad = parse_signals(spec if isinstance(spec, (int, str)) else str(spec))
    if bad:
        return [], Result(ret=-1, errno="EINVAL", value=f"unknown signal {bad!r}")
    for number in numbers:
        if number == WATCHDOG_SIGNAL or not 1 <= number <= 64:
            return [], Result(ret=-1, errno="EINVAL",
                              value=f"signal {number} is not one a spec may raise here")
    return numbers, None


def _child(python: str, raised: list[int], argv: list[str], out: int) -> None:
    try:
        os.dup2(out, 1)
        for number in raised:
            os.kill(os.getpid(), number)     # blocked by the caller's mask: stays pending
        os.execv(python, [python, "-I", PROBE] + argv)
    finally:
        os._exit(127)


@operation(family="process", raise_signals="str", fd="fd", mask="str")
def exec_signal_probe(raise_signals: str = "", fd: int = -1, mask: str = "") -> Result:
    """fork(2); the child sends itself `raise_signals` (block them first, in the calling
    thread: the child inherits its mask) and executes the kit's probe, which reads without
    blocking through the inherited signalfd `fd`, or else through a new signalfd for
    `mask`. Value: {count, records: {0: {signo, code, pid}, ...}, pid (the probe's),
    pending, blocked ("SIGUSR1,SIGRTMIN": the sets as the probe starts)}, or {killed_by: NAME} if a
    signal ended it. Avoid SIGPIPE and SIGXFSZ: Python ignores them at start-up, which
    discards them if pending."""
    raised, bad = _numbers(raise_signals)
    if bad:
        return bad
    if fd >= 0:
        argv = ["--fd", str(fd)]
    else:
        wanted, bad = _numbers(mask)
        if bad:
            return bad
        argv = ["--mask", ",".join(str(n) for n in wanted)]
    python = _interpreter()
    if python is None:
        return Result(ret=-1, errno="EACCES", value="no Python interpreter this user may "
                                                    "execute, for the probe")
    start = time.monotonic()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:
            _child(python, raised, argv, write_end)
        os.close(write_end)
        write_end = -1
        output, status = collect_child(pid, read_end, "the signal probe")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    duration = time.monotonic() - start
    if os.WIFSIGNALED(status):
        return Result(ret=0, value={"killed_by": signal.Signals(os.WTERMSIG(status)).name},
                      duration=duration)
    try:
        value = json.loads(output)
    except ValueError:
        return Result(ret=-1, errno="EIO", value=f"the probe printed {output[:200]!r}",
                      duration=duration)
    if "error" in value:
        return Result(ret=-1, errno="EIO", value=value["error"], duration=duration)
    # as read_siginfo gives them: records by integer index, signal sets by name
    value["records"] = {int(k): v for k, v in value["records"].items()}
    for key in ("pending", "blocked"):
        value[key] = ",".join(_name(n) for n in value[key])
    return Result(ret=0, value=value, duration=duration)
