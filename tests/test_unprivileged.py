"""The kit works for an unprivileged user: run the whole spec set after dropping root.

The child process sets its uid/gid to nobody (losing every capability) and checks each
behaviour through kit.engine.runner, as `kit run` would. Behaviours that need a
capability become "not applicable"; none may deviate or err because of privileges.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

from kit.adapter.process import run_forked
from kit.engine.runner import check_behaviour
from kit.engine.target import Target
import kit
from kit.spec.loader import load_text, load_tree

SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")
NOBODY = 65534


WARM_UP = """
behaviours:
  - id: warm.up.fails
    title: A deliberately failing spec, to load the shrinking and reporting code
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      initval: {integers: {min: 1, max: 100}}
      flags: {flag_sets: [EFD_SEMAPHORE]}
    steps:
      - eventfd: {initval: $initval, flags: $flags}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: 0}
  - id: warm.up.passes
    title: A passing spec with many examples, to reach every phase of the search
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      initval: {integers: {min: 1, max: 100}}
    max_examples: 50
    steps:
      - eventfd: {initval: $initval}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: $initval}
  - id: warm.up.model
    title: The model-based test, to load the stateful machinery
    cite: {page: epoll(7), section: DESCRIPTION, quote: "monitoring multiple file descriptors"}
    model: eventfd_epoll
    max_examples: 3
"""


def _warm_up() -> None:
    """Run the kit's code paths once while still root: the interpreter and its libraries
    may live where nobody cannot read (/root/.pyenv), and some modules load lazily."""
    target = Target.current()
    for behaviour in load_text(WARM_UP, "warm-up.yaml").behaviours:
        check_behaviour(behaviour, target, profile="default")
    for info in pkgutil.walk_packages(kit.__path__, "kit."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def _check_all_as_nobody() -> dict:
    _warm_up()
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    target = Target.current()
    out = {"uid": os.getuid(), "capabilities": target.capabilities, "verdicts": {}}
    for loaded in load_tree(SPECS):
        for behaviour in loaded.behaviours:
            verdict = check_behaviour(behaviour, target, profile="quick")
            out["verdicts"][behaviour.id] = [verdict.status, verdict.message]
    return out


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to drop to another user")
def test_every_behaviour_holds_without_privileges():
    status, data = run_forked(_check_all_as_nobody, bound=300)
    assert status == "ok", data
    assert data["uid"] == NOBODY and data["capabilities"] == 0
    bad = {bid: v for bid, v in data["verdicts"].items()
           if v[0] in ("deviates", "timeout", "error")}
    assert not bad, f"unprivileged run found problems: {bad}"
    assert any(v[0] == "conforms" for v in data["verdicts"].values())
