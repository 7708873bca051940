"""Parameters that can draw nothing, found when the spec loads.

Each integer-valued parameter gets the interval its values lie in (bounds may refer to
earlier parameters, so arithmetic is done on intervals). A range whose max is below its min
for every earlier draw, an `invalid_flags` whose valid bits cover its whole width, or an
`assume:` that no values in those intervals satisfy would otherwise fail only when the
behaviour runs, as a kit error far from its cause.
"""

from __future__ import annotations

from typing import Any, Optional

from kit.registry import CONSTANTS
from kit.spec import expressions as ex
from kit.spec.params import is_int

Interval = Optional[tuple[int, int]]   # (lowest, highest), None when not known


class Impossible(Exception):
    """`where` is ("params", name) or ("assume", index)."""

    def __init__(self, where: tuple[str, Any], message: str):
        super().__init__(message)
        self.where, self.message = where, message


def _constant(expr: Any) -> bool:
    return not any(leaf.startswith("$") for leaf in ex.walk(expr))


def interval(expr: Any, known: dict[str, Interval]) -> Interval:
    if is_int(expr):
        return expr, expr
    if isinstance(expr, str):
        ref = ex.REF.match(expr)
        if ref:
            return None if ref.group(2) else known.get(ref.group(1))
        value = CONSTANTS.get(expr)
        return (value, value) if is_int(value) else None
    if not ex.is_arithmetic(expr):
        if isinstance(expr, list) and _constant(expr):
            value = _evaluated(expr)
            return (value, value) if is_int(value) else None
        return None
    (form, items), = expr.items()
    parts = [interval(e, known) for e in items]
    if any(p is None for p in parts) or not parts:
        return None
    los, his = [p[0] for p in parts], [p[1] for p in parts]
    if form == "add":
        return sum(los), sum(his)
    if form == "sub":
        return los[0] - sum(his[1:]), his[0] - sum(los[1:])
    if form == "min":
        return min(los), min(his)
    if form == "max":
        return max(los), max(his)
    if all(lo == hi for lo, hi in parts):   # or: exact only on constants
        value = _evaluated(expr)
        return value, value
    return None


def _evaluated(expr: Any) -> Any:
    """A constant expression's value; None when it has none (e.g. an OR with null)."""
    try:
        return ex.evaluate(expr, {})
    except (TypeError, ValueError, ArithmeticError):
        return None


def _show(value: int) -> str:
    return hex(value) if abs(value) > 0xFFFF else str(value)


def _integers(name: str, arg: dict, known: dict[str, Interval]) -> Interval:
    for end in ("min", "max"):
        if _constant(arg[end]) and not is_int(_evaluated(arg[end])):
            raise Impossible(("params", name), f"{end} must be an integer, got "
                                               f"{ex.describe(arg[end])}")
    lo, hi = interval(arg["min"], known), interval(arg["max"], known)
    if lo is None or hi is None:
        return None
    if hi[1] < lo[0]:
        if lo[0] == lo[1] and hi[0] == hi[1]:
            message = f"min {_show(lo[0])} is above max {_show(hi[0])}: the range is empty"
        else:
            message = (f"max (at most {_show(hi[1])}) is below min (at least "
                       f"{_show(lo[0])}) whatever the earlier parameters: the range is empty")
        raise Impossible(("params", name), message)
    return lo[0], hi[1]


def _param_interval(name: str, spec: dict, known: dict[str, Interval]) -> Interval:
    (kind, arg), = spec.items()
    if kind == "integers":
        return _integers(name, arg, known)
    if kind == "sampled_from":
        parts = [interval(v, known) for v in arg]
        if any(p is None for p in parts):
            return None
        return min(p[0] for p in parts), max(p[1] for p in parts)
    if kind == "just":
        return interval(arg, known)
    if kind == "invalid_flags":
        width = (1 << arg.get("bits", 32)) - 1
        valid = sum(CONSTANTS[n] for n in arg["valid"])
        if valid & width == width:
            raise Impossible(("params", name), f"the valid flags cover all {arg.get('bits', 32)}"
                                               f" bits: no value has a bit outside them")
        return 0, width
    return None


_NEVER = {   # (left, right) -> no values in these intervals satisfy the predicate
    "lt": lambda l, r: l[0] >= r[1],
    "le": lambda l, r: l[0] > r[1],
    "gt": lambda l, r: l[1] <= r[0],
    "ge": lambda l, r: l[1] < r[0],
    "eq": lambda l, r: l[1] < r[0] or r[1] < l[0],
    "ne": lambda l, r: l[0] == l[1] == r[0] == r[1],
}


def check_possible(params: dict[str, dict], assume: list[dict]) -> None:
    """Raise Impossible for the first parameter or assumption that can never be met."""
    known: dict[str, Interval] = {}
    for name, spec in params.items():
        known[name] = _param_interval(name, spec, known)
    for i, predicate in enumerate(assume):
        (op, (left, right)), = predicate.items()
        l, r = interval(left, known), interval(right, known)
        if l is not None and r is not None and _NEVER[op](l, r):
            raise Impossible(("assume", i), (
                f"{op} can never hold: {ex.describe(left)} is in [{_show(l[0])}, "
                f"{_show(l[1])}], {ex.describe(right)} in [{_show(r[0])}, {_show(r[1])}]"))
