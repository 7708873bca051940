"""Bounded stress loops: the same steps many times, to make a race show itself.

`repeat: {iterations: N, seconds: S, steps: [...]}` runs its steps up to N times in the
thorough profile and a fixed share of N in the others (profiles.LOOP_SHARE), stopping
early, without a failure, once S seconds (scaled alike, never above the spec's S) have
gone: the loop is there to give a race chances, and the per-behaviour limit must hold
whatever the machine. Each iteration gets a fresh copy of the names bound before the
loop, plus `$iteration` (1-based); nothing bound inside comes out, and what it opened is
closed at its end. A failure names its iteration ("iteration 4711 of 10000: ..."), and
only the failing iteration's trace is kept (the others conformed). Nothing here draws at
random: a loop is replayed exactly by its parameters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kit.engine.profiles import LOOP_SHARE
from kit.engine.records import CONFORMS, StepFailure, StepRecord
from kit.native.race import plan as scaled_loop
from kit.spec.schema import ITERATION as INDEX

if TYPE_CHECKING:
    from kit.engine.interpreter import Run
    from kit.spec.model import Step


def planned(step: Step, profile: str) -> tuple[int, float]:
    """The iterations and the time cap of this loop in this profile."""
    share = LOOP_SHARE.get(profile, LOOP_SHARE["quick"])
    loop = scaled_loop(step.args["iterations"], step.args["seconds"], share)
    return loop.rounds, loop.seconds


def run_loop(run: Run, step: Step, env: dict, records: list[StepRecord],
             where: str) -> dict:
    """Run the loop; returns what `as` binds: {iterations, planned, seconds}."""
    total, cap = planned(step, run.profile)
    started = time.monotonic()
    done = 0
    for i in range(1, total + 1):
        if time.monotonic() - started >= cap:
            break
        iteration: list[StepRecord] = []
        before = set(run.owned)
        try:
            try:
                run.execute(step.substeps, {**env, INDEX: i}, iteration, where=where)
            finally:
                try:
                    run.end_groups(step.substeps, iteration)
                finally:
                    run.close_since(before)   # 10 000 iterations must not run out of fds
        except StepFailure as exc:
            records.extend(iteration)
            exc.message = f"iteration {i} of {total}: {exc.message}"
            raise
        done = i
    elapsed = time.monotonic() - started
    records.append(StepRecord(line=step.line, call=f"repeat({done} of {total} iterations in "
                                                     f"{elapsed:.2f} s)", where=where,
                              status=CONFORMS))
    return {"iterations": done, "planned": total, "seconds": round(elapsed, 3)}
