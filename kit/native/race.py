"""The native race executor (race.c): the epoll selftest's lost-wake-up loops at C speed,
run as a subprocess and read back as one flat record.

A Python round (a fresh waiter thread, the engine's bookkeeping) costs milliseconds; the
selftest runs 100 000 rounds in C. Here the loop itself is C and only its outcome comes back:

    {scenario, planned, rounds, lost, lost_at, waiter, waited_ms, seconds, rounds_per_s,
     seconds_cap}

The loop stops at the first wait that ran out (a lost wake-up). `lost` is 0, or that loss
in words ("round 50 of 2000: the partner got no event within 2000 ms"), so that the
ordinary `fields: {lost: 0}` deviates with a message naming the round and the waiter;
`lost_at` (the round, 1-based), `waiter` and `waited_ms` give the same as data. Rounds scale with
the profile like a `repeat` loop (the caller passes the share). Every wait in C is bounded
by `wait_ms`; the process is killed if it outlives its own bound (`Hung`), and it arms its own
alarm as a last resort. It opens nothing but its own eventfds and epoll instances.
"""

from __future__ import annotations

import errno as errnos
import json
import math
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kit.native.build import BuildError, build

SOURCE = Path(__file__).with_name("race.c")
NO_COMPILER = "no C compiler: the native race executor cannot be built"

# name -> what it races (and which selftest it is)
SCENARIOS = {
    "ping_pong": "an eventfd ping-pong between two threads, each side through its own epoll "
                 "instance (level- or edge-triggered)",
    "mod_rearm": "EPOLL_CTL_MOD re-arming an always-readable edge-triggered eventfd against "
                 "a waiter's next wait (epoll59)",
    "all_woken": "N waiters on one instance holding N edge-triggered eventfds, all written "
                 "at once (epoll60)",
    "timeout_race": "a write landing at an 11 ms waiter's timeout, which passes the event on "
                    "to an unbounded waiter (epoll61)",
    "zero_timeout": "N threads making zero-timeout waits on one always-ready level-triggered "
                    "eventfd (epoll65)",
}
MAX_WAITERS = 64
STARTUP_GRACE = 5.0     # seconds, beyond the loop's own cap, for a loaded machine


class Unavailable(Exception):
    """The executor cannot be built here: the behaviour is not applicable (the reason)."""


class Hung(Exception):
    """The executor outlived its bound and was killed."""


class ExecutorFailed(Exception):
    """The executor could not run, died, or gave up without a system call's error: the
    kit's failure (or the machine's), never the target's answer."""


@dataclass(frozen=True)
class Plan:
    rounds: int        # rounds in this profile
    seconds: float     # time cap in this profile


def plan(rounds: int, seconds: float, share: float) -> Plan:
    """A loop's rounds and time cap at a profile's share of its thorough size: at least one
    round and 0.1 s, never more than written (kit.engine.repeat's loops follow it too)."""
    return Plan(max(1, round(rounds * share)), max(0.1, seconds * share))


def executor() -> Path:
    """The built executor (cached on disk by source hash, and here per user: a checker that
    dropped its privileges cannot run the one built in root's home)."""
    return _executor(os.geteuid())


@cache
def _executor(uid: int) -> Path:   # uid: only the cache key
    try:
        return build(SOURCE, "race", flags=("-O2", "-pthread", "-Wall"),
                     what="the native race executor")
    except BuildError as exc:
        text = str(exc)
        raise Unavailable(NO_COMPILER if text.startswith("no C compiler") else
                          f"the native race executor cannot be built: {text}") from None


def unavailable_reason() -> str | None:
    try:
        executor()
    except Unavailable as exc:
        return str(exc)
    return None


def bound(p: Plan, wait_ms: int) -> float:
    """How long the process may take at most: its cap, a last round's waits, a grace."""
    return p.seconds + 3 * wait_ms / 1000 + STARTUP_GRACE


def describe_loss(record: dict) -> str:
    where = f"round {record['lost_at']} of {record['planned']}"
    if not record.get("waited_ms"):
        return f"{where}: {record['waiter']}'s zero-timeout wait found nothing ready"
    return f"{where}: the {record['waiter']} got no event within {record['waited_ms']} ms"


def run(scenario: str, p: Plan, waiters: int, et: bool, wait_ms: int) -> dict:
    """Run one loop; the record above, or {error, errno} when a call in it failed.
    Raises Unavailable (no executor), Hung (killed at its bound), ValueError (arguments)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if not 1 <= waiters <= MAX_WAITERS:
        raise ValueError(f"waiters must be 1 to {MAX_WAITERS}, got {waiters}")
    if wait_ms < 1:
        raise ValueError(f"wait_ms must be at least 1, got {wait_ms}")
    exe = executor()
    limit = bound(p, wait_ms)
    cmd = [str(exe), scenario, str(p.rounds), f"{p.seconds:.3f}", str(waiters),
           "1" if et else "0", str(wait_ms), str(math.ceil(limit) + 1)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                              check=False, close_fds=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ExecutorFailed(f"cannot run the native race executor: {exc}") from None
    except subprocess.TimeoutExpired:
        raise Hung(f"the native race executor ({scenario}) did not finish within "
                   f"{limit:g} s and was killed") from None
    lines = done.stdout.strip().splitlines()
    try:
        record = json.loads(lines[-1]) if lines else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        how = (f"killed by signal {-done.returncode}" if done.returncode < 0
               else f"exit status {done.returncode}")
        detail = (done.stderr.strip() or done.stdout.strip())[:300]
        if done.returncode == -14:   # its own alarm: it hung past every wait's bound
            raise Hung(f"the native race executor ({scenario}) hung and its alarm ended it")
        raise ExecutorFailed(f"the native race executor failed ({how})"
                             + (f": {detail}" if detail else ""))
    if record.get("error"):
        code = record.get("errno") or 0
        if not code:   # no system call failed: the executor itself gave up
            raise ExecutorFailed(f"the native race executor ({scenario}): {record['error']}")
        return {"error": record["error"], "errno": errnos.errorcode.get(code, f"E{code}"),
                "rounds": record.get("rounds")}
    record.pop("error", None)
    record.pop("errno", None)
    if record.get("lost"):
        record["lost"] = describe_loss(record)
    elapsed = record.get("seconds") or 0
    record["rounds_per_s"] = round(record["rounds"] / elapsed) if elapsed > 0 else None
    record["seconds_cap"] = round(p.seconds, 3)
    return record
