"""Spec parameters: one table of kinds, each saying what it draws (a Hypothesis strategy)
and whether a given value is one it could have drawn.

Generation (kit.spec.strategies), the load-time check of `examples:` and the check of a
replay's `--params` all go through this table, so what a replay accepts cannot drift from
what a run generates. Every integer range always tries its bounds and their neighbours (the
boundaries are where kernels break), then draws from the whole range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from kit.registry import CONSTANTS
from kit.spec import expressions as ex


class FlagSet(int):
    """An int that prints as the flag names it was built from."""

    names: tuple[str, ...] = ()

    def __new__(cls, names):
        obj = super().__new__(cls, sum(CONSTANTS[n] for n in names))
        obj.names = tuple(names)
        return obj

    def __repr__(self) -> str:
        return "|".join(self.names) or "0"

    def __reduce__(self):  # copy/deepcopy/pickle rebuild it from its names
        return (FlagSet, (self.names,))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def same(a: Any, b: Any) -> bool:
    """Equal, and a boolean only equals a boolean (True == 1 in Python, not in a spec)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _show(value: Any) -> str:
    return hex(value) if is_int(value) and abs(value) > 0xFFFF else repr(value)


def _invalid_mask(arg: dict) -> tuple[int, int]:
    """invalid_flags: (the valid bits, every bit of the width)."""
    return sum(CONSTANTS[n] for n in arg["valid"]), (1 << arg.get("bits", 32)) - 1


# -- integers ---------------------------------------------------------------------------------


def _integers_bounds(arg: dict, env: dict) -> tuple[Any, Any]:
    return ex.evaluate(arg["min"], env), ex.evaluate(arg["max"], env)


def _draw_integers(arg: dict, env: dict) -> st.SearchStrategy:
    lo, hi = _integers_bounds(arg, env)
    if lo > hi:
        # only for bounds that depend on earlier draws (a constant empty range is refused
        # when the spec loads): this combination is impossible, Hypothesis tries another
        return st.nothing()
    edges = sorted({v for v in (lo, lo + 1, hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _admits_integers(arg: dict, value: Any, env: dict) -> str | None:
    lo, hi = _integers_bounds(arg, env)
    if not is_int(value):
        return f"must be an integer, got {value!r}"
    if not lo <= value <= hi:
        return f"{_show(value)} is outside its range [{_show(lo)}, {_show(hi)}]"
    return None


# -- the other kinds --------------------------------------------------------------------------


def _admits_sampled(arg: list, value: Any, env: dict) -> str | None:
    choices = [ex.evaluate(v, env) for v in arg]
    if any(same(value, c) for c in choices):
        return None
    return f"{_show(value)} is not one of {', '.join(ex.describe(v) for v in arg)}"


def _admits_booleans(arg: Any, value: Any, env: dict) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _draw_flag_sets(arg: list, env: dict) -> st.SearchStrategy:
    return st.lists(st.sampled_from(arg), unique=True).map(
        lambda names: FlagSet(sorted(names, key=arg.index)))


def _admits_flag_sets(arg: list, value: Any, env: dict) -> str | None:
    if not is_int(value):
        return f"must be an integer (an OR of {', '.join(arg)}), got {value!r}"
    # reachable exactly when the flags it wholly contains OR together to it
    covered = 0
    for name in arg:
        if CONSTANTS[name] & ~value == 0:
            covered |= CONSTANTS[name]
    if covered != value:
        return f"{_show(value)} is not an OR of {', '.join(arg)}"
    return None


def _draw_invalid_flags(arg: dict, env: dict) -> st.SearchStrategy:
    mask, width = _invalid_mask(arg)
    outside = [1 << b for b in range(width.bit_length()) if not (1 << b) & mask]
    single = st.sampled_from(outside)
    anything = st.integers(0, width).filter(lambda v: v & ~mask)
    return st.one_of(single, anything)


def _admits_invalid_flags(arg: dict, value: Any, env: dict) -> str | None:
    mask, width = _invalid_mask(arg)
    if not is_int(value) or not 0 <= value <= width:
        return f"must be an integer from 0 to {_show(width)}, got {value!r}"
    if not value & ~mask:
        return f"{_show(value)} has no bit outside {', '.join(arg['valid']) or 'nothing'}"
    return None


def _admits_just(arg: Any, value: Any, env: dict) -> str | None:
    want = ex.evaluate(arg, env)
    return None if same(value, want) else f"must be {_show(want)}, got {_show(value)}"


@dataclass(frozen=True)
class Kind:
    draw: Callable[[Any, dict], st.SearchStrategy]
    admits: Callable[[Any, Any, dict], str | None]   # why the value cannot be drawn, or None


KINDS: dict[str, Kind] = {
    "integers": Kind(_draw_integers, _admits_integers),
    "sampled_from": Kind(lambda arg, env: st.sampled_from([ex.evaluate(v, env) for v in arg]),
                         _admits_sampled),
    "booleans": Kind(lambda arg, env: st.booleans(), _admits_booleans),
    "flag_sets": Kind(_draw_flag_sets, _admits_flag_sets),
    "invalid_flags": Kind(_draw_invalid_flags, _admits_invalid_flags),
    "just": Kind(lambda arg, env: st.just(ex.evaluate(arg, env)), _admits_just),
}


def _same_values(a: Any, b: dict) -> bool:
    return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def param_strategy(spec: dict, env: dict) -> st.SearchStrategy:
    (kind, arg), = spec.items()
    return KINDS[kind].draw(arg, env)


def values_problem(params: dict[str, dict], assume: list[dict], values: Any,
                   examples: list[dict] = ()) -> str | None:
    """Why `values` is not a set of parameters the behaviour could have run with (None: it
    is): unknown or missing names, a wrong type, a value out of range, a broken `assume:`.
    The spec's own `examples:` always run, even outside the drawn ranges, so they pass."""
    if any(_same_values(values, example) for example in examples):
        return None
    if not isinstance(values, dict):
        return f"parameters are a JSON object of name: value, got {values!r}"
    known = ", ".join(params) or "none"
    unknown = [n for n in values if n not in params]
    if unknown:
        return f"unknown parameter {unknown[0]!r} (this behaviour's parameters: {known})"
    missing = [n for n in params if n not in values]
    if missing:
        return f"missing parameter {missing[0]!r} (this behaviour's parameters: {known})"
    env: dict = {}
    for name, spec in params.items():
        (kind, arg), = spec.items()
        why = KINDS[kind].admits(arg, values[name], env)
        if why:
            return f"parameter {name}: {why}"
        env[name] = values[name]
    for i, predicate in enumerate(assume):
        (op, (left, right)), = predicate.items()
        try:
            holds = ex.holds(predicate, env)
        except TypeError:
            holds = False
        if not holds:
            return (f"the parameters break assume[{i}], {op}({ex.describe(left)}, "
                    f"{ex.describe(right)}): {_show(ex.evaluate(left, env))} against "
                    f"{_show(ex.evaluate(right, env))}")
    return None
