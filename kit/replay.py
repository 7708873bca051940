"""Is this a set of parameters the behaviour could have run with? Asked before a replay
(`kit replay ID --params JSON`, the plugin's `--kit-params`) runs anything, so that a
mistyped or out-of-range value is a usage error, never a kernel deviation."""

from __future__ import annotations

import json
from typing import Any

from kit.model.shape import program_problem
from kit.spec.loader import load_tree
from kit.spec.model import Behaviour
from kit.spec.params import values_problem


class BadParams(Exception):
    pass


def parse_params(text: str) -> Any:
    """--params as JSON; BadParams with the parser's reason otherwise."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadParams(f"--params is not JSON: {exc}") from None


def replay_problem(behaviour: Behaviour, params: Any) -> str | None:
    """Why `params` cannot be replayed on this behaviour (None: it can)."""
    if behaviour.untestable:
        return None   # nothing runs
    if behaviour.model:
        return program_problem(behaviour.model, params)
    return values_problem(behaviour.params, behaviour.assume, params, behaviour.examples)


def find_behaviour(roots: list, behaviour_id: str) -> Behaviour | None:
    """The behaviour with this id in the spec set (None: no such id, or only a spec error)."""
    for loaded in load_tree(*roots):
        for behaviour in loaded.behaviours:
            if behaviour.id == behaviour_id:
                return behaviour
    return None


def check_replay(roots: list, behaviour_id: str, text: str) -> None:
    """BadParams unless `text` is JSON the behaviour `behaviour_id` can replay. An id not
    found (or found only as a spec error) passes: the run itself reports it."""
    params = parse_params(text)
    behaviour = find_behaviour(roots, behaviour_id)
    if behaviour is not None:
        problem = replay_problem(behaviour, params)
        if problem:
            raise BadParams(f"{behaviour_id}: {problem}; nothing was run")
