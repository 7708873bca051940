"""A value computed from earlier results, for claims about several calls together
(e.g. "exactly one of two threads was woken": the sum of their event counts is 1).

The engine checks each step's own result; it has no expectation that compares results
of different steps. `compute` returns its argument, evaluated like any other value
($references and the add / sub / or / min / max forms), so that an ordinary `expect`
can check it."""

from __future__ import annotations

from kit.adapter.libc import Result
from kit.registry import operation


@operation(family="common", value="any")
def compute(value) -> Result:
    """Value is `value`, evaluated ({add: [$a, $b]}, {min: [...]}, a $reference...)."""
    ret = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return Result(ret=ret, value=value)
