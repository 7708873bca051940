"""Names for a behaviour's steps that survive edits better than line numbers.

A step is named by its `as` name, by its operation when the behaviour calls that operation
once (`epoll_ctl`), or by the operation and its occurrence counted from 1 in document order,
threads and children included (`epoll_ctl#2`). Known deviations use these names to say
where a target differs.
"""

from __future__ import annotations

from collections import Counter

from kit.spec.model import Step
from kit.spec.schema import CONTROL as CONTROL_ACTIONS  # one list: wait_blocked is control too


def operation_steps(steps: list[Step]) -> list[Step]:
    """Every operation step, in document order, descending into threads and children; a
    `woken` step counts as one (it has a result: how many of a group woke, and which)."""
    out: list[Step] = []
    for step in steps:
        if step.action in CONTROL_ACTIONS and step.action != "woken":
            out += operation_steps(step.substeps)
        else:
            out.append(step)
    return out


def locators(steps: list[Step]) -> dict[str, Step]:
    """Every name a step can be found by."""
    ops = operation_steps(steps)
    total = Counter(s.action for s in ops)
    seen: Counter = Counter()
    names: dict[str, Step] = {}
    for step in ops:
        seen[step.action] += 1
        names[f"{step.action}#{seen[step.action]}"] = step
        if total[step.action] == 1:
            names[step.action] = step
    for step in ops:  # an `as` name wins over an operation name it happens to equal
        if step.bind:
            names[step.bind] = step
    return names


def name_of(steps: list[Step], line: int, action: str) -> str | None:
    """The preferred name of the operation step at that line: `as`, OP, else OP#N."""
    ops = operation_steps(steps)
    total = Counter(s.action for s in ops)
    seen: Counter = Counter()
    for step in ops:
        seen[step.action] += 1
        if step.line == line and step.action == action:
            if step.bind:
                return step.bind
            return step.action if total[step.action] == 1 else \
                f"{step.action}#{seen[step.action]}"
    return None


def ambiguous(steps: list[Step], name: str) -> int:
    """How many times an operation named without #N occurs (0 when it is not one)."""
    return sum(s.action == name for s in operation_steps(steps))
