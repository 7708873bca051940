"""One behaviour, start to verdict, without pytest: applicability, Hypothesis over the
parameters (or a reference model's state machine), and the verdict record.

The pytest plugin, the unprivileged-run test and the matrix runner all call
check_behaviour(); pytest only maps verdicts to its outcomes.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import zlib
from collections import Counter
from dataclasses import asdict

from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis.errors import FlakyFailure

from kit.adapter import scratch
from kit.adapter.proc import open_fds
from kit.adapter.process import run_forked
from kit.adapter.target_calls import after_bound
from kit.adapter.watchdog import TargetTimeout
from kit.engine import exclusive, gates, known, machine_wide, profiles
from kit.engine import interpreter as interp
from kit.engine.target import Target, not_applicable_reason
from kit.spec.loader import typed
from kit.spec.model import Behaviour
from kit.spec.strategies import behaviour_params
from kit.verdict import Verdict, replay_command

PROFILES = {name: dict(max_examples=profiles.EXAMPLES[name]) for name in profiles.NAMES}
for _name, _values in PROFILES.items():
    settings.register_profile(
        f"kit-{_name}", deadline=None, database=None, print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.differing_executors],
        **_values)


# Up to this many operations per model program. Long programs find more: with 25 examples,
# planted model bugs were found on 10 of 20 seeds at 40 operations, 18 of 20 at 120; they
# are cut down afterwards anyway (kit.model.minimise).
STEPS_PER_PROGRAM = 100


class Deviation(Exception):
    """The kernel did not do what the spec says (raised inside Hypothesis to shrink)."""

    def __init__(self, params: dict, outcome: interp.Outcome):
        super().__init__(outcome.message)
        self.params, self.outcome = params, outcome


class _Timeout(TargetTimeout):
    """A hang: a BaseException, so Hypothesis stops at once instead of shrinking it."""

    def __init__(self, params: dict, outcome: interp.Outcome):
        super().__init__(outcome.message)
        self.params, self.outcome = params, outcome


class _Unjudged(TargetTimeout):
    """An example that came out `late` every time it ran: the machine, not the target,
    kept it from being judged (a BaseException, so Hypothesis stops at once)."""

    def __init__(self, params: dict, outcome: interp.Outcome):
        super().__init__(outcome.message)
        self.params, self.outcome = params, outcome


# Runs of one example that came out `late` (a waker held back past a waiter's timeout)
# before it is reported as not judged.
LATE_TRIES = 3


def item_seed(behaviour_id: str, run_seed: int) -> int:
    return zlib.crc32(behaviour_id.encode()) ^ run_seed


class _Checker:
    def __init__(self, behaviour: Behaviour, target: Target, profile: str, run_seed: int,
                 bound: float):
        self.b, self.target, self.bound = behaviour, target, bound
        self.profile = settings.get_profile(f"kit-{profile}")
        self.profile_name = profile          # the interpreter scales `repeat` loops by it
        self.seed = item_seed(behaviour.id, run_seed)
        self.variants: set[str] = set()
        self.last: interp.Outcome | None = None

    def examples(self) -> int:
        return min(self.profile.max_examples, self.b.max_examples or self.profile.max_examples)

    def steps(self, fixed: dict | None) -> None:
        def check(params):
            for _ in range(LATE_TRIES):
                outcome = interp.Run(self.b, self.target, params, self.bound,
                                     profile=self.profile_name).outcome()
                if outcome.status != interp.LATE:
                    break
            else:
                raise _Unjudged(params, outcome)
            self.last = outcome
            self.variants.update(outcome.variants)
            if outcome.status == interp.TIMEOUT:
                raise _Timeout(params, outcome)
            if outcome.status != interp.CONFORMS:
                raise Deviation(params, outcome)

        if fixed is not None:
            check(fixed)
            return
        test = given(behaviour_params(self.b))(check)
        for ex in reversed(self.b.examples):
            test = example(ex)(test)
        if self.b.params:
            tuned = settings(self.profile, max_examples=self.examples())
        else:  # nothing to draw: one run, nothing to shrink
            tuned = settings(self.profile, max_examples=1,
                             phases=(Phase.explicit, Phase.generate))
        seed(self.seed)(tuned(test))()

    def model(self, fixed: dict | None) -> None:
        from hypothesis.stateful import run_state_machine_as_test

        from kit.model import load_machine, replayer
        from kit.model.minimise import minimise
        from kit.model.program import ModelDisagreement, ModelTimeout, calls_bounded_by

        if fixed is not None:
            with calls_bounded_by(self.bound):
                outcome = self.last = replayer(self.b.model)(fixed["program"])
            if outcome.status == interp.TIMEOUT:
                raise _Timeout(fixed, outcome)
            if outcome.status != interp.CONFORMS:
                raise Deviation(fixed, outcome)
            return
        machine = seed(self.seed)(load_machine(self.b.model))
        try:
            # No Hypothesis shrinking: on programs of real system calls it takes about a
            # minute, and kit.model.minimise gets as short a program in a second or two.
            with calls_bounded_by(self.bound):
                run_state_machine_as_test(machine, settings=settings(
                    self.profile, max_examples=self.examples(),
                    stateful_step_count=STEPS_PER_PROGRAM,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate)))
        except ModelDisagreement as exc:
            exc = minimise(exc)
            raise Deviation({"program": exc.program}, exc.outcome) from None
        except ModelTimeout as exc:   # a hang is not cut down: each replay would hang
            raise _Timeout({"program": exc.program}, exc.outcome) from None


def check_behaviour(behaviour: Behaviour, target: Target, *, profile: str = "quick",
                    run_seed: int = 0, bound: float = interp.DEFAULT_BOUND,
                    params: dict | None = None, nodeid: str = "") -> Verdict:
    """Check one behaviour on the target; never raises for what the target does."""
    started = time.monotonic()

    def verdict(status: str, **kw) -> Verdict:
        kw.setdefault("gates", gates.explain(behaviour, target))
        return Verdict.of(behaviour, status, nodeid=nodeid, seed=run_seed,
                          duration=round(time.monotonic() - started, 4), **kw)

    if behaviour.untestable:
        return verdict("untestable", message=behaviour.untestable)
    reason = not_applicable_reason(behaviour, target)
    if reason:
        # nothing ran: only the gates that decided applicability say anything
        return verdict("not applicable", message=reason,
                       gates=[g for g in gates.explain(behaviour, target)
                              if g.startswith("applies:")])
    checker = _Checker(behaviour, target, profile, run_seed, bound)
    try:
        try:
            with exclusive.held(behaviour.exclusive), \
                    machine_wide.fenced(behaviour, target.allow_machine_wide), \
                    machine_wide.held(behaviour.machine_wide):
                (checker.model if behaviour.model else checker.steps)(params)
        except FlakyFailure as flaky:
            # The target failed once and then passed on the same input: an intermittent
            # deviation (a race, a timing bound), reported with the failing run's trace.
            from kit.model.program import ModelDisagreement

            first = next((e for e in flaky.exceptions
                          if isinstance(e, (Deviation, _Timeout, ModelDisagreement))), None)
            if first is None:
                raise
            if isinstance(first, ModelDisagreement):
                first = Deviation({"program": first.program}, first.outcome)
            first.outcome.message = f"intermittent: {first.outcome.message} (the same input " \
                                    f"then passed)"
            raise first from None
    except (Deviation, _Timeout) as exc:
        found = typed(exc.params)
        status = exc.outcome.status
        # A target that hangs where the docs say it returns is deviating too: a recorded
        # `timeout: true` applies to it.
        judged = known.judge(behaviour, target, exc.outcome.records, found)
        message = exc.outcome.message
        if judged.unmatched:
            message += f" ({judged.unmatched})"
        defect = behaviour.documentation_defect
        if defect and not judged.reason:
            # the steps hold the kernel to what it was recorded doing against the page
            message += (f" (this behaviour checks the kernel's side of a documentation "
                        f"defect, recorded as: {defect.kernel_does}; the kernel no longer "
                        f"does so)")
        return verdict(status, message=message, counterexample=found,
                       trace=[r.as_dict() for r in exc.outcome.records],
                       variants=sorted(checker.variants), known_deviation=judged.reason,
                       new_deviation=judged.unmatched,
                       replay=replay_command(behaviour.id, found, profile=profile))
    except _Unjudged as exc:
        # not the kernel's answer, so never a deviation; an error, so never hidden either
        return verdict("error", message=f"not judged in {LATE_TRIES} runs of one example: "
                                        f"{exc.outcome.message} (a machine this loaded holds "
                                        f"the run back past the waiters' timeouts)",
                       counterexample=typed(exc.params),
                       trace=[r.as_dict() for r in exc.outcome.records])
    except exclusive.Busy as exc:
        return verdict("error", message=f"not run: machine-wide state held elsewhere: {exc}")
    except exclusive.Unsafe as exc:
        return verdict("error", message=f"not run: {exc}")
    except Exception as exc:  # noqa: BLE001 - a kit bug becomes an error verdict, not a crash
        return verdict("error", message=f"kit error: {type(exc).__name__}: {exc}",
                       trace=[{"traceback": traceback.format_exc(limit=8)}])
    # A replay keeps its trace even when it conforms: that is what was asked for.
    trace = [r.as_dict() for r in checker.last.records] if params is not None and checker.last \
        else []
    # Only a full check says a recorded deviation is gone; one replayed example cannot.
    defect = behaviour.documentation_defect
    return verdict("conforms", variants=sorted(checker.variants), trace=trace,
                   documentation_defect=asdict(defect) if defect else None,
                   counterexample=typed(params) if params is not None else None,
                   fixed=known.fixed(behaviour, target) if params is None else None)


DEFAULT_LIMIT = 100.0  # seconds for one behaviour, all its examples, before its process dies


def leaks(fds_before: set[int], threads_before: set) -> str | None:
    """What the kit left behind since the snapshot, as a sentence (None: nothing)."""
    leaked_fds = open_fds() - fds_before
    leaked_threads = [t.name for t in set(threading.enumerate()) - threads_before
                      if t.is_alive()]
    if not (leaked_fds or leaked_threads):
        return None
    return "the kit leaked " + "; ".join(filter(None, [
        f"descriptors {sorted(leaked_fds)}" if leaked_fds else "",
        f"threads {leaked_threads}" if leaked_threads else ""]))


def check_with_leak_check(behaviour: Behaviour, target: Target, **kw) -> Verdict:
    fds_before, threads_before = open_fds(), set(threading.enumerate())
    verdict = check_behaviour(behaviour, target, **kw)
    leak = leaks(fds_before, threads_before)
    if leak and verdict.status == "error":
        # The error came first and most likely caused the leak: it leads.
        verdict.message = f"{verdict.message}; and then {leak}"
    elif leak and verdict.status not in ("deviates", "timeout"):
        verdict.status, verdict.message = "error", leak
    return verdict


# A target that hangs costs little: once a kind of call (an operation on a kind of
# descriptor) has hung for the full bound in CONFIRMATIONS behaviours of this process (a
# pytest worker), behaviours are first checked with SHORT_BOUND per call. A timeout there
# (or any other verdict) is final only if every call that reached the short bound is of
# a kind known to hang; anything else is checked again with the full bound, so a slow
# but healthy call is never reported as a hang. Two confirmations, so that one freak
# stall of a loaded machine cannot make every later call of its kind a short-bound
# timeout.
SHORT_BOUND = 0.5
SHORT_GRACE = 0.25
CONFIRMATIONS = 2
_hangs_seen: Counter[str] = Counter()


def _known_hangs() -> frozenset[str]:
    return frozenset(kind for kind, n in _hangs_seen.items() if n >= CONFIRMATIONS)


def check_isolated(behaviour: Behaviour, target: Target, *, limit: float = DEFAULT_LIMIT,
                   **kw) -> Verdict:
    """check_behaviour in a forked child with a hard time limit.

    A call that ignores the watchdog's signal, or one that crashes the process, then
    costs one behaviour a `timeout` or `error` verdict, never the run: the child is
    killed (as soon as a call is interp.STUCK_GRACE past its bound), and the runner (a
    pytest worker) goes on to the next behaviour. Time run out in the kit's own code,
    outside any call on the target, is a kit error.
    """
    started = time.monotonic()
    with scratch.behaviour_root():  # removed here, whatever became of the child
        verdict = _check_with_circuit(behaviour, target, limit, kw)
    if behaviour.machine_wide:
        # a checker killed mid-behaviour could not run its finally: restore from its journal
        restored = machine_wide.restore_leftovers(behaviour.machine_wide)
        if restored:
            verdict.message = "; ".join(filter(None, [verdict.message] + [
                f"{name} restored to {value} from the journal after the checker died"
                for name, value in restored]))
    verdict.duration = round(time.monotonic() - started, 4)   # every attempt counts
    return verdict


def _check_with_circuit(behaviour: Behaviour, target: Target, limit: float,
                        kw: dict) -> Verdict:
    full = kw.get("bound", interp.DEFAULT_BOUND)
    short = min(SHORT_BOUND, full)
    hanging = _known_hangs()
    if hanging and short < full:

        def allowed(call) -> float:
            # A call of a kind known to hang gets the short bound, even where the step
            # gives itself longer with `within`.
            return (short if call.kind in hanging else call.bound) + SHORT_GRACE

        verdict, kinds = _check_forked(behaviour, target, limit, dict(kw, bound=short),
                                       allowed)
        if verdict.status in ("conforms", "not applicable", "untestable"):
            return verdict
        # Only calls of kinds known to hang reached the short bound (or none did): with
        # the full bound they would hang all the same.
        if kinds <= hanging and (kinds or verdict.status != "timeout"):
            if verdict.status == "timeout":
                verdict.message += (f" (calls of this kind already hung for the full bound "
                                    f"on this target, so this one was given {short:g}s: "
                                    f"{', '.join(sorted(kinds))})")
            return verdict
    verdict, kinds = _check_forked(behaviour, target, limit, kw,
                                   after_bound(interp.STUCK_GRACE))
    if verdict.status == "timeout":
        _hangs_seen.update(kinds - {interp.WAIT_RAN_OUT})
    return verdict


def _check_forked(behaviour: Behaviour, target: Target, limit: float, kw: dict,
                  allowed) -> tuple[Verdict, set[str]]:
    """One forked check: the verdict, and the kinds of call that outlived their bound."""
    from kit.adapter import target_calls

    started = time.monotonic()
    status, data = run_forked(
        lambda: {"verdict": check_with_leak_check(behaviour, target, **kw).as_dict(),
                 "overran": target_calls.overran()},
        limit, stuck_after=allowed)
    if status == "ok":
        return Verdict(**data["verdict"]), set(data["overran"])
    elapsed = round(time.monotonic() - started, 4)
    common = dict(nodeid=kw.get("nodeid", ""), seed=kw.get("run_seed"), duration=elapsed)
    if status == "timeout" and data.in_call is not None:
        call = data.in_call
        hang = interp.StepRecord(line=call.line, call=call.call, where=call.where,
                                 status=interp.TIMEOUT, mismatches=[str(data)])
        # A target known to hang at this step is still a known deviation when it ignores
        # the watchdog too; any other stuck call is a new one.
        judged = known.judge(behaviour, target, [hang], {})
        message = str(data) + (f" ({judged.unmatched})" if judged.unmatched else "")
        return Verdict.of(behaviour, "timeout", message=message, trace=[hang.as_dict()],
                          known_deviation=judged.reason, new_deviation=judged.unmatched,
                          **common), {call.kind or call.call}
    if status == "timeout":
        return Verdict.of(behaviour, "error", message=f"kit error: {data}",
                          trace=[{"traceback": data.stack}] if data.stack else [],
                          **common), set()
    return Verdict.of(behaviour, "error", message=f"the process checking this behaviour "
                                                  f"crashed: {data}", **common), set()


def explain(verdict: Verdict | dict) -> str:
    """The failure text: citation, counterexample, step trace, replay command."""
    v = verdict if isinstance(verdict, dict) else verdict.as_dict()
    verb = {"timeout": "timed out", "deviates": "deviates"}.get(v["status"], v["status"])
    cite = v.get("cite") or {}
    lines = [f"{v['id']} {verb}: {v['title']}"]
    if cite:
        lines += [f"  documented in {cite['page']}, {cite['section']}:",
                  f'    "{cite["quote"]}"']
    lines.append(f"  spec: {v['file']}:{v['line']}")
    if v.get("counterexample") is not None:
        label = "parameters" if v["status"] == "conforms" else "counterexample"
        lines.append(f"  {label}: {json.dumps(v['counterexample'], sort_keys=True)}")
    if v.get("known_deviation"):
        lines.append(f"  known deviation: {v['known_deviation']}")
    if v.get("new_deviation"):
        lines.append(f"  {v['new_deviation']}")
    if v.get("fixed"):
        lines.append(f"  fixed: {v['fixed']}")
    lines.append("  trace:")
    for record in v.get("trace", []):
        if "traceback" in record:
            lines += ["    " + line for line in record["traceback"].splitlines()]
        else:
            lines += ["    " + line for line in
                      interp.StepRecord(**record).render().splitlines()]
    if v.get("replay"):
        lines.append(f"  replay: {v['replay']}")
    return "\n".join(lines)
