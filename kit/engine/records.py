"""What a run of steps produces, shared by the interpreter and the control steps it drives
(threads, waiter groups, repeat loops), and read by verdicts and reports: statuses, step
records, the outcome, and the failure that stops a run."""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.adapter.process import EXEC_BOUND
from kit.adapter.watchdog import TargetTimeout
from kit.engine import expectations

# A call outside the watchdog counts as stuck only this much later than the step bound:
# such calls bound themselves (an exec probe waits up to EXEC_BOUND).
UNGUARDED_EXTRA = EXEC_BOUND
# A call still inside the target this long after its bound (the watchdog re-signals it
# every 50 ms) ignores interruptions: its checker is killed then, not at the hard limit.
# Its verdict is a timeout either way; the grace only covers a slow return under load.
STUCK_GRACE = 1.0
# What a when_blocked wait that ran out of its bound reports among the calls that overran:
# never a hang of the target, so never a kind known to hang.
WAIT_RAN_OUT = "when_blocked wait ran out"

CONFORMS, DEVIATES, TIMEOUT, ERROR = "conforms", "deviates", "timeout", "error"
# Not a verdict: the example could not be judged, because the machine held the run back
# so long that a waiter's own timeout ran out before the step meant to wake it began (the
# runner runs the example again).
LATE = "late"


@dataclass
class StepRecord:
    line: int
    call: str
    result: dict | None = None
    expected: dict | None = None
    variant: str | None = None        # the reason, when a kernel-version variant applied
    mismatches: list[str] = field(default_factory=list)
    status: str = CONFORMS
    where: str = "main"

    def render(self) -> str:
        mark = {"conforms": "ok  ", "deviates": "FAIL", "timeout": "HANG", "error": "ERR "}
        got = ""
        if self.status == TIMEOUT:
            got = " -> did not return within its bound (interrupted by the watchdog)"
        elif self.result is not None:
            r = self.result
            got = f" -> {r['errno']}" if r["errno"] else f" -> {r['ret']}"
            if r["value"] not in (None, r["ret"]) and not r["errno"]:
                got += f" (value {expectations._show(r['value'])})"
        where = "" if self.where == "main" else f"[{self.where}] "
        # a model program's records are numbered by operation, not by spec line
        place = "operation" if self.where == "model" else "line"
        lines = [f"{mark[self.status]} {place} {self.line}: {where}{self.call}{got}"]
        if self.expected and self.status != CONFORMS:
            lines.append(f"       expected: {_describe_expect(self.expected)}")
        if self.variant:
            lines.append(f"       (kernel-specific expectation: {self.variant})")
        lines += [f"       {m}" for m in self.mismatches]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _describe_expect(expect: dict) -> str:
    return expectations.describe(expect)


@dataclass
class Outcome:
    status: str
    records: list[StepRecord]
    message: str = ""
    variants: list[str] = field(default_factory=list)

    def trace(self) -> str:
        return "\n".join(r.render() for r in self.records)


class StepFailure(Exception):
    """Stops a run at the first step that deviates, times out or errs."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message



def failure_of(exc: BaseException) -> StepFailure:
    """What an exception inside a thread, waiter or loop amounts to for the behaviour."""
    if isinstance(exc, StepFailure):
        return exc
    if isinstance(exc, TargetTimeout):
        return StepFailure(TIMEOUT, str(exc))
    return StepFailure(ERROR, f"{type(exc).__name__}: {exc}")
