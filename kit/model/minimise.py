"""Cutting a disagreeing program down to the operations that show the disagreement.

Hypothesis shrinks stateful runs only so far, and slowly when every step is a real
system call (about a minute, leaving ten or more operations). Programs are JSON data and a
run takes milliseconds, so replaying candidates is the cheaper way: drop an operation (and
whatever it created), keep the result if the program still disagrees at the same kind of
operation; then try simpler values.
"""

from __future__ import annotations

from kit.model.program import ModelDisagreement, ModelTimeout, Program


def _disagreement(program: list[dict]) -> ModelDisagreement | None:
    try:
        Program().run(program)
    except ModelDisagreement as exc:
        return exc
    except (KeyError, TypeError):   # a candidate that names what it no longer makes
        return None
    except ModelTimeout:            # a candidate that hangs shows another problem
        return None
    return None


def _names(op: dict) -> set[str]:
    """The objects an operation names (its own id included)."""
    return {v for k, v in op.items() if k in ("id", "peer", "file", "efd", "ep", "obj")}


def _without(program: list[dict], i: int) -> list[dict]:
    """The program without operation i and whatever names what it made (a dup of a dup,
    transitively)."""
    gone = _made(program[i])
    kept = []
    for o in program[i + 1:]:
        if gone & _names(o):
            gone |= _made(o)
        else:
            kept.append(o)
    return program[:i] + kept


def _made(op: dict) -> set[str]:
    """The objects an operation creates (a pipe or socket pair: both ends)."""
    return {op[k] for k in ("id", "peer") if k in op}


def minimise(found: ModelDisagreement) -> ModelDisagreement:
    """Drop operations while the program still disagrees at the same kind of operation:
    every operation left in a counterexample is one more a reader must think about."""
    best = found
    changed = True
    while changed:
        changed = False
        last = best.program[-1]["op"]
        for i in reversed(range(len(best.program) - 1)):
            candidate = _without(best.program, i)
            if not candidate or candidate[-1] is not best.program[-1]:
                continue
            again = _disagreement(candidate)
            if again and len(again.program) == len(candidate) and \
                    again.program[-1]["op"] == last:
                best, changed = again, True
                break
    return _simpler_values(best)


def _simpler_values(found: ModelDisagreement) -> ModelDisagreement:
    """Signal values and write amounts of 0 or 1 where the disagreement stays."""
    best = found
    for i, op in enumerate(found.program[:-1]):
        if op["op"] not in ("signal", "write"):
            continue
        for simpler in (0, 1):
            if best.program[i]["value"] <= simpler:
                break
            candidate = [dict(o, value=simpler) if j == i else o
                         for j, o in enumerate(best.program)]
            again = _disagreement(candidate)
            if again and len(again.program) == len(candidate) and \
                    again.program[-1]["op"] == found.program[-1]["op"]:
                best = again
                break
    return best
