"""Model-based testing: the reference model agrees with the kernel, a wrong model is
caught with a short program, and that program replays from the verdict."""

from __future__ import annotations

import json

import pytest

import kit.model.epoll as epoll_model
import kit.model.eventfd as eventfd_model
from kit.engine.runner import check_behaviour
from kit.engine.target import Target
from kit.model.program import run_program
from kit.spec.loader import load_text

SPEC = """
behaviours:
  - id: model.test.sequences
    title: Random sequences agree with the model
    cite: {page: epoll(7), section: DESCRIPTION, quote: "monitoring multiple file descriptors"}
    model: eventfd_epoll
    max_examples: 200
"""


@pytest.fixture
def behaviour():
    loaded = load_text(SPEC, "model.yaml")
    assert not loaded.errors
    return loaded.behaviours[0]


def test_model_agrees_with_the_kernel(behaviour):
    verdict = check_behaviour(behaviour, Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


@pytest.mark.timeout(600)  # finding and shrinking a real-syscall program takes a while
def test_a_wrong_edge_triggered_model_is_caught_and_replayed(behaviour, monkeypatch):
    # A model that forgets new events never re-reports an edge-triggered item.
    monkeypatch.setattr(epoll_model.EpollModel, "event", lambda self, key, kind: None)
    verdict = check_behaviour(behaviour, Target.current(), profile="default")
    assert verdict.status == "deviates"
    program = verdict.counterexample["program"]
    assert program[-1]["op"] == "wait" and len(program) <= 8
    assert "model expects" in verdict.message
    assert verdict.replay.startswith("kit replay model.test.sequences --params ")
    # The same program, replayed, still disagrees with the wrong model ...
    assert run_program(json.loads(json.dumps(program))).status == "deviates"
    # ... and agrees once the model is right again.
    monkeypatch.undo()
    assert run_program(program).status == "conforms"


@pytest.mark.timeout(600)
def test_a_wrong_counter_model_is_caught(behaviour, monkeypatch):
    monkeypatch.setattr(eventfd_model, "COUNTER_MAX", 0xFFFFFFFFFFFFFFFF)
    verdict = check_behaviour(behaviour, Target.current(), profile="thorough")
    assert verdict.status == "deviates"
    assert any(r["status"] == "deviates" for r in verdict.trace)


def test_replay_of_a_given_program_runs_exactly_it(behaviour):
    program = [{"op": "eventfd", "id": "e1", "initval": 3, "semaphore": True},
               {"op": "read", "efd": "e1"}, {"op": "poll", "efd": "e1"}]
    verdict = check_behaviour(behaviour, Target.current(), params={"program": program})
    assert verdict.status == "conforms"
