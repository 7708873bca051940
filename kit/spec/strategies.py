"""Spec parameters -> Hypothesis strategies.

Every integer range always tries its bounds and their neighbours (the boundaries
are where kernels break), then draws from the whole range. Later parameters may
refer to earlier ones in their bounds, so parameters are drawn in order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from kit.registry import CONSTANTS
from kit.spec import expressions as ex
from kit.spec.model import Behaviour


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


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (lo, lo + 1, hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _invalid_flags(valid: list[str], bits: int) -> st.SearchStrategy[int]:
    mask = sum(CONSTANTS[n] for n in valid)
    outside = [1 << b for b in range(bits) if not (1 << b) & mask]
    single = st.sampled_from(outside)
    anything = st.integers(0, (1 << bits) - 1).filter(lambda v: v & ~mask)
    return st.one_of(single, anything)


def param_strategy(spec: dict, env: dict) -> st.SearchStrategy[Any]:
    (kind, arg), = spec.items()
    if kind == "integers":
        return _integers(ex.evaluate(arg["min"], env), ex.evaluate(arg["max"], env))
    if kind == "sampled_from":
        return st.sampled_from([ex.evaluate(v, env) for v in arg])
    if kind == "booleans":
        return st.booleans()
    if kind == "flag_sets":
        return st.lists(st.sampled_from(arg), unique=True).map(
            lambda names: FlagSet(sorted(names, key=arg.index)))
    if kind == "invalid_flags":
        return _invalid_flags(arg["valid"], arg.get("bits", 32))
    if kind == "just":
        return st.just(ex.evaluate(arg, env))
    raise ValueError(f"unknown parameter kind {kind}")


def behaviour_params(behaviour: Behaviour) -> st.SearchStrategy[dict]:
    """One strategy drawing every parameter in declaration order, then the assumptions."""

    @st.composite
    def draw_all(draw) -> dict:
        env: dict = {}
        for name, spec in behaviour.params.items():
            env[name] = draw(param_strategy(spec, env), label=name)
        for predicate in behaviour.assume:
            assume(ex.holds(predicate, env))
        return env

    return draw_all()
