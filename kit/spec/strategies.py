"""Spec parameters -> one Hypothesis strategy per behaviour.

What each parameter kind draws is in kit.spec.params (beside the check of a replay's
values, so the two cannot drift). Later parameters may refer to earlier ones in their
bounds, so parameters are drawn in order.
"""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from kit.spec import expressions as ex
from kit.spec.model import Behaviour
from kit.spec.params import FlagSet, param_strategy

__all__ = ["FlagSet", "behaviour_params", "param_strategy"]


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
