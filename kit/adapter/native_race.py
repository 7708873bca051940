"""race_loop: a lost-wake-up loop run by the native race executor (kit.native.race), for
races Python cannot drive fast enough to make likely (a Python round costs milliseconds,
the kernel's selftest runs 100 000 rounds in C).

The step gives the loop's full size (`rounds`, `seconds`: what the thorough profile runs)
and the profile's share (`share: $loop_share`), as a `repeat` loop scales; value is the
executor's record {scenario, planned, rounds, lost, lost_at, waiter, seconds, rounds_per_s,
seconds_cap}, judged by the ordinary expectations (`expect: {fields: {lost: 0}}`), so a lost
wake-up is a deviation whose trace names the round and the waiter. A call inside the loop
that failed is ret -1 with its errno and value {error}. The executor is a child process
that creates its own descriptors only; a hung one is killed at its bound (a timeout).
Without a C compiler the behaviours using it are not applicable (kit.engine.target).
"""

from __future__ import annotations

import time

from kit import confinement
from kit.adapter.libc import Result
from kit.adapter.watchdog import TargetTimeout
from kit.native import race
from kit.registry import operation


@operation(family="epoll", scenario="str", rounds="int", seconds="seconds", share="any",
           waiters="int", et="any", wait_ms="int")
def race_loop(scenario: str, rounds: int, seconds: float, share, waiters: int = 1,
              et=False, wait_ms: int = 1000) -> Result:
    """Run a selftest race loop in C (ping_pong, mod_rearm, all_woken, timeout_race,
    zero_timeout); value {rounds, lost, lost_at, waiter, ...}.

    rounds and seconds are the thorough profile's; share (write $loop_share) scales both.
    Every wait that must be woken is bounded by wait_ms: one that runs out is the lost
    wake-up, and the loop stops there. et (true or EPOLLET) makes ping_pong's items
    edge-triggered.
    """
    refused = confinement.check_race_loop({"scenario": scenario, "waiters": waiters})
    if refused:
        raise confinement.Refused(refused[1])
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
        # a spec error, reported like a refusal (an error, never a deviation)
        raise confinement.Refused(f"share must be a number in (0, 1] (write $loop_share), "
                                  f"got {share!r}")
    if wait_ms < 1:
        raise confinement.Refused(f"wait_ms must be at least 1, got {wait_ms}")
    plan = race.plan(rounds, seconds, float(share))
    start = time.monotonic()
    try:
        record = race.run(scenario, plan, waiters, bool(et), wait_ms)
    except race.Hung as exc:
        raise TargetTimeout(str(exc)) from None
    duration = time.monotonic() - start
    if "error" in record:
        return Result(ret=-1, errno=record["errno"], value=record, duration=duration)
    return Result(ret=0, value=record, duration=duration)
