"""Known deviations, matched failure by failure.

A failing run is a known deviation only when the step that failed (or, for a model, the
operation that disagreed) and what it gave there match one recorded for this target. Any
other failure of the same behaviour is new, and says which recorded one it is not. A
behaviour that conforms where a deviation is recorded has been fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.adapter.libc import Result
from kit.engine import expectations, gates
from kit.engine.records import CONFORMS, DEVIATES, TIMEOUT, StepRecord
from kit.engine.target import Target
from kit.spec import changes, locate, patterns
from kit.spec import expressions as ex
from kit.spec.model import Behaviour, KnownDeviation


@dataclass
class Judgement:
    reason: str | None = None      # the matching known deviation's reason
    unmatched: str | None = None   # why none of those recorded for this target matched


def applicable(behaviour: Behaviour, target: Target) -> list[KnownDeviation]:
    return [dev for dev in behaviour.known_deviations
            if not (dev.platform and dev.platform != target.platform)
            and not (dev.arch and target.arch not in dev.arch)
            and target.gate_holds(dev)]


def describe(dev: KnownDeviation) -> str:
    """The recorded failure in a few words: where, what, on which targets."""
    where = " and ".join(filter(None, [dev.platform and f"platform {dev.platform}",
                                       dev.arch and f"architecture {'/'.join(dev.arch)}",
                                       gates.condition(dev)]))
    if dev.operation:
        what = f"operation {dev.operation} with a disagreement matching /{dev.disagreement}/"
    elif dev.observed and dev.observed.get("timeout"):
        what = f"step {dev.step} not returning within its bound"
    else:
        what = f"step {dev.step} giving {expectations.describe(dev.observed or {})}"
    return f"{what}, on {where}"


def failing_record(records: list[StepRecord]) -> StepRecord | None:
    return next((r for r in records if r.status != CONFORMS), None)


def _action(record: StepRecord) -> str:
    return record.call.split("(", 1)[0]


def _int_keys(value):
    """Records of an `in_child` step crossed a process boundary as JSON, which turned index
    keys ({0: ...} of read_siginfo, epoll_wait by index) into strings: turn them back."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v)
                for k, v in value.items()}
    return value


def _result(record: StepRecord) -> Result | None:
    r = record.result
    return None if r is None else Result(ret=r["ret"], errno=r["errno"],
                                         value=_int_keys(r["value"]))


def _gave(record: StepRecord) -> str:
    if record.status == TIMEOUT:
        return "no return within its bound"
    result = _result(record)
    if result is None:
        return "; ".join(record.mismatches) or "no result"
    if result.errno:
        return f"errno {result.errno}"
    shown = f"returns {ex.describe(result.ret)}"
    if result.value is not None and result.value != result.ret:
        value = ex.describe(result.value)
        shown += f", value {value if len(value) <= 120 else value[:117] + '...'}"
    return shown


def where_it_failed(behaviour: Behaviour, record: StepRecord | None) -> str:
    """The failure of this run, named as a known deviation would name it."""
    if record is None:
        return "this run failed outside any step's result"
    if record.where == "model":
        return f"this run disagreed at operation {_action(record)}: " \
               f"{'; '.join(record.mismatches)}"
    name = locate.name_of(behaviour.steps, record.line, _action(record)) or \
        f"{_action(record)} at line {record.line}"
    return f"this run failed at step {name}, which gave {_gave(record)}"


def matches(dev: KnownDeviation, behaviour: Behaviour, record: StepRecord | None,
            params: dict) -> bool:
    if record is None:
        return False
    if dev.operation:
        return record.where == "model" and _action(record) == dev.operation and bool(
            patterns.search(dev.disagreement, "\n".join(record.mismatches)))
    if record.where == "model":
        return False
    step = locate.locators(behaviour.steps).get(dev.step)
    if step is None or (step.line, step.action) != (record.line, _action(record)):
        return False
    if dev.observed.get("timeout"):
        return record.status == TIMEOUT
    result = _result(record)
    if record.status != DEVIATES or result is None:
        return False
    try:
        return not expectations.check(dev.observed, result, params)
    except (ex.MissingField, ex.UnboundReference):
        return False


def _why(dev: KnownDeviation, target: Target) -> str:
    """The recorded reason, and for a deviation tied to a kernel change, since when."""
    since = "; ".join(f"kernel {target.kernel} {verb} {changes.describe(change)}"
                      for change, verb in ((dev.since, "carries"), (dev.before, "lacks"))
                      if change)
    return f"{dev.reason} ({since})" if since else dev.reason


def judge(behaviour: Behaviour, target: Target, records: list[StepRecord],
          params: dict) -> Judgement:
    """Whether this failing run is a deviation recorded for the target, and if not, why."""
    recorded = applicable(behaviour, target)
    if not recorded:
        return Judgement()
    record = failing_record(records)
    for dev in recorded:
        if matches(dev, behaviour, record, params):
            return Judgement(reason=_why(dev, target))
    known = "; ".join(describe(dev) for dev in recorded)
    ones = "ones" if len(recorded) > 1 else "one"
    return Judgement(unmatched=f"a new deviation: {where_it_failed(behaviour, record)}, "
                               f"not as the known {ones} recorded for this target: {known}")


def fixed(behaviour: Behaviour, target: Target) -> str | None:
    """For a behaviour that conforms: the recorded deviations it no longer shows."""
    recorded = applicable(behaviour, target)
    if not recorded:
        return None
    return "known deviation no longer seen: " + "; ".join(describe(dev) for dev in recorded)
