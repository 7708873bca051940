"""Replay parameters are checked against the spec before anything runs: a value of the
wrong type, out of range, unknown or missing, a broken `assume:`, or a model program of the
wrong shape is the user's mistake (exit 3, with the reason), never a kernel deviation.

The check and generation share one table (kit.spec.params), and every value generation
draws (for each behaviour in specs/, and each program the model tests write) passes it."""

from __future__ import annotations

import json

import pytest
from helpers import (
    READS_COUNTER,
    REPO,
    behaviour,
    load_one,
    run_kit,
    run_python,
    spec_text,
    write_spec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.model.shape import MAX_OPERATIONS, program_problem
from kit.registry import CONSTANTS
from kit.replay import replay_problem
from kit.spec.loader import load_tree, typed
from kit.spec.strategies import behaviour_params

KINDS = load_one(spec_text(behaviour("x.replay.kinds", """
    params:
      count: {integers: {min: 1, max: 100}}
      extra: {integers: {min: 0, max: {sub: [200, $count]}}}
      clock: {sampled_from: [CLOCK_REALTIME, CLOCK_MONOTONIC]}
      verbose: {booleans: true}
      flags: {flag_sets: [EFD_NONBLOCK, EFD_SEMAPHORE]}
      bad: {invalid_flags: {valid: [EFD_CLOEXEC, EFD_NONBLOCK], bits: 32}}
      size: {just: 8}
    assume: [{ne: [$count, 50]}]
    examples:
      - {count: 0, extra: 0, clock: 0, verbose: false, flags: 0, bad: 1, size: 8}
    steps:
      - eventfd: {initval: $count}
""")))
VALID = {"count": 5, "extra": 195, "clock": CONSTANTS["CLOCK_MONOTONIC"], "verbose": True,
         "flags": CONSTANTS["EFD_NONBLOCK"] | CONSTANTS["EFD_SEMAPHORE"], "bad": 1, "size": 8}


def test_values_the_parameters_can_take_pass():
    assert replay_problem(KINDS, VALID) is None
    assert replay_problem(KINDS, {**VALID, "flags": 0}) is None


@pytest.mark.parametrize("change, reason", [
    ({"count": 101}, "parameter count: 101 is outside its range [1, 100]"),
    ({"count": "5"}, "parameter count: must be an integer, got '5'"),
    ({"count": True}, "parameter count: must be an integer, got True"),
    ({"count": 5.0}, "parameter count: must be an integer, got 5.0"),
    ({"extra": 196}, "parameter extra: 196 is outside its range [0, 195]"),
    ({"clock": 99}, "parameter clock: 99 is not one of CLOCK_REALTIME, CLOCK_MONOTONIC"),
    ({"verbose": 1}, "parameter verbose: must be true or false, got 1"),
    ({"flags": CONSTANTS["EFD_CLOEXEC"]},
     f"parameter flags: {CONSTANTS['EFD_CLOEXEC']:#x} is not an OR of EFD_NONBLOCK, "
     f"EFD_SEMAPHORE"),
    ({"bad": CONSTANTS["EFD_CLOEXEC"]},
     f"parameter bad: {CONSTANTS['EFD_CLOEXEC']:#x} has no bit outside EFD_CLOEXEC, "
     f"EFD_NONBLOCK"),
    ({"bad": 1 << 32}, "parameter bad: must be an integer from 0 to 0xffffffff, got 4294967296"),
    ({"size": 9}, "parameter size: must be 8, got 9"),
    ({"count": 50, "extra": 0},
     "the parameters break assume[0], ne($count, 50): 50 against 50"),
])
def test_a_value_the_parameters_cannot_take_is_refused_with_the_reason(change, reason):
    assert replay_problem(KINDS, {**VALID, **change}) == reason


def test_unknown_and_missing_parameters_are_refused():
    names = "count, extra, clock, verbose, flags, bad, size"
    assert replay_problem(KINDS, {**VALID, "cout": 1}) == \
        f"unknown parameter 'cout' (this behaviour's parameters: {names})"
    del_size = {k: v for k, v in VALID.items() if k != "size"}
    assert replay_problem(KINDS, del_size) == \
        f"missing parameter 'size' (this behaviour's parameters: {names})"
    assert replay_problem(KINDS, [1, 2]).startswith("parameters are a JSON object")


def test_the_specs_own_examples_replay_even_outside_the_drawn_ranges():
    # a counterexample found among `examples:` carries a replay command that must work
    assert replay_problem(KINDS, KINDS.examples[0]) is None


SPEC_BEHAVIOURS = [b for r in load_tree(REPO / "specs") for b in r.behaviours
                   if b.params and not b.model]


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_value_a_run_draws_from_specs_replays(data):
    """No drift: whatever generation draws for a behaviour in specs/ (as a report records
    it, through typed()) is accepted by the replay check."""
    b = data.draw(st.sampled_from(SPEC_BEHAVIOURS), label="behaviour")
    params = data.draw(behaviour_params(b), label="params")
    recorded = json.loads(json.dumps(typed(params)))
    assert replay_problem(b, recorded) is None, (b.id, recorded)


# -- model programs ---------------------------------------------------------------------------


def _program(*ops) -> dict:
    return {"program": list(ops)}


E1 = {"op": "eventfd", "id": "e1", "initval": 1, "semaphore": False}
P1 = {"op": "epoll", "id": "p1"}


@pytest.mark.parametrize("program, reason", [
    ({"program": []} | {"x": 1}, 'a model behaviour takes exactly {"program": [operation, ...]}'),
    ({"program": "e1"}, "program must be a list of operations"),
    (_program("eventfd"), "program operation 1: an operation is an object with \"op\", "
                          "got 'eventfd'"),
    (_program({"op": "fork"}), "program operation 1: unknown operation 'fork' (this model's: "
                               "add, close, del, dup, epoll, eventfd, mod, poll, read, wait, "
                               "write)"),
    (_program({"op": "timerfd", "id": "t1", "clock": "CLOCK_REALTIME"}),
     "program operation 1: unknown operation 'timerfd' (this model's: add, close, del, dup, "
     "epoll, eventfd, mod, poll, read, wait, write)"),
    (_program({**E1, "initval": "1"}), "program operation 1: eventfd: initval must be an "
                                       "integer from 0 to 0xffffffff, got '1'"),
    (_program({**E1, "initval": 1 << 32}), "program operation 1: eventfd: initval must be an "
                                           "integer from 0 to 0xffffffff, got 4294967296"),
    (_program({**E1, "semaphore": 0}), "program operation 1: eventfd: semaphore must be true "
                                       "or false, got 0"),
    (_program({**E1, "colour": "red"}), "program operation 1: eventfd: unknown argument "
                                        "'colour' (takes id, initval, semaphore)"),
    (_program({"op": "eventfd", "id": "e1", "initval": 1}),
     "program operation 1: eventfd: missing argument 'semaphore'"),
    (_program(E1, {"op": "write", "file": "e2", "value": 1}),
     "program operation 2: write: file 'e2' names no open object; it must name an open "
     "eventfd"),
    (_program(E1, P1, {"op": "write", "file": "p1", "value": 1}),
     "program operation 3: write: file 'p1' names an epoll; it must name an open eventfd"),
    (_program(E1, E1), "program operation 2: eventfd: id 'e1' names an object that is "
                       "already open"),
    (_program(E1, {"op": "close", "obj": "e1"}, {"op": "read", "file": "e1"}),
     "program operation 3: read: file 'e1' names no open object; it must name an open "
     "eventfd or timerfd or signalfd"),
    (_program(E1, P1, {"op": "add", "ep": "p1", "file": "e1", "events": ["EPOLLWAKEUP"]}),
     "program operation 3: add: events must be a list of distinct names from EPOLLIN, "
     "EPOLLOUT, EPOLLPRI, EPOLLRDHUP, got ['EPOLLWAKEUP']"),
    (_program(*[E1, {"op": "close", "obj": "e1"}] * (MAX_OPERATIONS // 2 + 1)),
     f"program has {MAX_OPERATIONS + 2} operations, more than {MAX_OPERATIONS}"),
])
def test_a_program_of_the_wrong_shape_is_refused_with_the_reason(program, reason):
    assert program_problem("eventfd_epoll", program) == reason


def test_a_well_formed_program_passes_including_the_older_efd_spelling():
    program = _program(E1, P1, {"op": "add", "ep": "p1", "efd": "e1", "events": ["EPOLLIN"]},
                       {"op": "write", "efd": "e1", "value": 0xFFFFFFFFFFFFFFFE},
                       {"op": "dup", "obj": "e1", "id": "e2"}, {"op": "wait", "ep": "p1"},
                       {"op": "close", "obj": "e1"}, {"op": "read", "file": "e2"})
    assert program_problem("eventfd_epoll", program) is None
    timers = _program({"op": "timerfd", "id": "t1", "clock": "CLOCK_MONOTONIC"},
                      {"op": "settime", "file": "t1", "when": "now", "periodic": True},
                      {"op": "signalfd", "id": "s1", "mask": ["SIGUSR1"]},
                      {"op": "signal", "sig": "SIGUSR1", "value": 7},
                      {"op": "read", "file": "s1", "records": 2})
    assert program_problem("timerfd_signalfd_epoll", timers) is None


@pytest.mark.parametrize("model", ["eventfd_epoll", "timerfd_signalfd_epoll", "epoll_tree",
                                   "pipes_sockets_epoll"])
def test_every_program_the_model_tests_generate_passes(model):
    """No drift between the shape check and kit.model: programs the stateful tests run
    (on the real kernel) are accepted, operation by operation."""
    from hypothesis.stateful import run_state_machine_as_test

    from kit.model import load_machine

    checked = []

    class Checked(load_machine(model)):
        def teardown(self):
            ops = list(self.program.ops)
            super().teardown()
            checked.append(len(ops))
            assert program_problem(model, {"program": ops}) is None, ops

    run_state_machine_as_test(Checked, settings=settings(
        max_examples=15, stateful_step_count=40, deadline=None, database=None))
    assert checked


# -- kit replay and --kit-params --------------------------------------------------------------


GOOD = behaviour("x.replay.good", READS_COUNTER, title="A read returns the counter")


@pytest.fixture
def specs(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    model = tmp_path / "specs" / "model" / "m.yaml"
    model.parent.mkdir()
    model.write_text((REPO / "specs" / "model" / "eventfd_epoll.yaml").read_text())
    return tmp_path


@pytest.mark.parametrize("bid, params, reason", [
    ("x.replay.good", '{"initval": 0}', "parameter initval: 0 is outside its range [1, 100]"),
    ("x.replay.good", '{"initval": "7"}', "parameter initval: must be an integer, got '7'"),
    ("x.replay.good", '{"initval": 7, "x": 1}', "unknown parameter 'x'"),
    ("x.replay.good", '{}', "missing parameter 'initval'"),
    ("x.replay.good", '{"initval": 7', "--params is not JSON"),
    ("model.eventfd_epoll.random_sequences", '{"program": [{"op": "fork"}]}',
     "program operation 1: unknown operation 'fork'"),
])
def test_kit_replay_exits_3_with_the_reason_and_runs_nothing(specs, bid, params, reason):
    replay = run_kit(specs, "replay", bid, "--specs", str(specs / "specs"), "--params",
                     params)
    assert replay.ret == 3, replay.output
    assert reason in replay.stderr
    assert "nothing was run" in replay.stderr or "not JSON" in replay.stderr
    assert replay.stdout == ""                   # pytest never started


def test_kit_replay_of_a_well_formed_program_runs_it(specs):
    replay = run_kit(specs, "replay", "model.eventfd_epoll.random_sequences", "--specs",
                     str(specs / "specs"), "--params",
                     json.dumps({"program": [{"op": "eventfd", "id": "e1", "initval": 3,
                                              "semaphore": True},
                                             {"op": "read", "file": "e1"}]}))
    assert replay.ret == 0, replay.output
    assert "1 passed" in replay.stdout


@pytest.mark.parametrize("params, reason", [
    ('{"initval": 1000}', "--kit-params for x.replay.good: parameter initval: 1000 is "
                          "outside its range [1, 100]"),
    ("not json", "--params is not JSON"),
])
def test_kit_params_the_behaviour_cannot_take_are_a_pytest_usage_error(specs, params, reason):
    ran = run_python(["-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
                      "--rootdir", str(specs), "--kit-params", params, "--kit-id",
                      "x.replay.good", str(specs / "specs")], cwd=specs)
    assert ran.ret == 4, ran.output                # pytest's usage error
    assert reason in ran.stderr
    assert "passed" not in ran.stdout and "failed" not in ran.stdout
