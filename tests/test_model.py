"""Model-based testing: the reference models agree with the kernel, a wrong model or a
wrong kernel answer is caught with a short program, and that program replays from the
verdict."""

from __future__ import annotations

import json
import signal

import pytest

import kit.adapter.epoll as epoll_adapter
import kit.adapter.poll as poll_adapter
import kit.adapter.sockets as sockets_adapter
import kit.adapter.signalfd as signalfd_adapter
import kit.adapter.timerfd as timerfd_adapter
import kit.model.epoll as epoll_model
import kit.model.eventfd as eventfd_model
import kit.model.signalfd as signalfd_model
from kit.adapter.libc import Result
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


def _search(behaviour, seeds: int = 5):
    """The verdict of the first of a few seeded searches that finds a disagreement.

    Which programs a seed yields also depends on what the process ran before (Hypothesis
    draws some values from constants in the loaded modules), so one seed can miss a
    planted bug that the next finds; five thorough searches do not miss these."""
    for run_seed in range(seeds):
        verdict = check_behaviour(behaviour, Target.current(), profile="thorough",
                                  run_seed=run_seed)
        if verdict.status != "conforms":
            break
    return verdict


@pytest.fixture
def behaviour():
    loaded = load_text(SPEC, "model.yaml")
    assert not loaded.errors
    return loaded.behaviours[0]


def test_model_agrees_with_the_kernel(behaviour):
    verdict = check_behaviour(behaviour, Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


def test_a_wrong_edge_triggered_model_is_caught_and_replayed(behaviour, monkeypatch):
    # A model that forgets new events never re-reports an edge-triggered item.
    monkeypatch.setattr(epoll_model.EpollModel, "event", lambda self, key, kind, certain=True: None)
    verdict = _search(behaviour)
    assert verdict.status == "deviates"
    program = verdict.counterexample["program"]
    assert program[-1]["op"] == "wait" and len(program) <= 8
    assert "model expects" in verdict.message
    # searched in the thorough profile, which the command names
    assert verdict.replay.startswith("kit replay model.test.sequences --profile thorough --params ")
    # The same program, replayed, still disagrees with the wrong model ...
    assert run_program(json.loads(json.dumps(program))).status == "deviates"
    # ... and agrees once the model is right again.
    monkeypatch.undo()
    assert run_program(program).status == "conforms"


def test_a_wrong_counter_model_is_caught(behaviour, monkeypatch):
    monkeypatch.setattr(eventfd_model, "COUNTER_MAX", 0xFFFFFFFFFFFFFFFF)
    verdict = _search(behaviour)
    assert verdict.status == "deviates"
    assert any(r["status"] == "deviates" for r in verdict.trace)


def test_replay_of_a_given_program_runs_exactly_it(behaviour):
    program = [{"op": "eventfd", "id": "e1", "initval": 3, "semaphore": True},
               {"op": "read", "efd": "e1"}, {"op": "poll", "efd": "e1"}]
    verdict = check_behaviour(behaviour, Target.current(), params={"program": program})
    assert verdict.status == "conforms"


# -- timerfds and signalfds -------------------------------------------------------------

NOTIFY_SPEC = SPEC.replace("model.test.sequences", "model.test.notify").replace(
    "model: eventfd_epoll", "model: timerfd_signalfd_epoll")

SIGNAL_ORDER = [
    {"op": "signalfd", "id": "s1", "mask": ["SIGRTMIN", "SIGRTMIN+1", "SIGUSR1"]},
    {"op": "signal", "sig": "SIGRTMIN+1", "value": 1},
    {"op": "signal", "sig": "SIGRTMIN", "value": 2},
    {"op": "signal", "sig": "SIGRTMIN", "value": 3},
    {"op": "signal", "sig": "SIGUSR1", "value": 4},
    {"op": "signal", "sig": "SIGUSR1", "value": 5},     # a standard signal queues once
    {"op": "signal", "sig": "SIGUSR2", "value": 6},     # not in the mask: stays pending
    {"op": "poll", "file": "s1"},
    {"op": "read", "file": "s1", "records": 2},
    {"op": "read", "file": "s1", "records": 4},
    {"op": "read", "file": "s1"},
    {"op": "setmask", "file": "s1", "mask": ["SIGUSR2"]},
    {"op": "read", "file": "s1", "records": 3},
    {"op": "poll", "file": "s1"},
]

TIMER = [
    {"op": "timerfd", "id": "t1", "clock": "CLOCK_MONOTONIC"},
    {"op": "read", "file": "t1"},
    {"op": "settime", "file": "t1", "when": "now", "periodic": False, "abstime": False},
    {"op": "poll", "file": "t1"},
    {"op": "gettime", "file": "t1"},
    {"op": "read", "file": "t1"},
    {"op": "read", "file": "t1"},
    {"op": "settime", "file": "t1", "when": "now", "periodic": True, "abstime": True},
    {"op": "gettime", "file": "t1"},
    {"op": "settime", "file": "t1", "when": "never", "periodic": True},
    {"op": "poll", "file": "t1"},
    {"op": "gettime", "file": "t1"},
]

# An edge-triggered signalfd: a signal in its mask must be reported; one outside it may
# or may not be (undocumented; Linux wakes every signalfd of the process).
EDGE = [
    {"op": "signalfd", "id": "s1", "mask": ["SIGUSR1"]},
    {"op": "epoll", "id": "p2"},
    {"op": "add", "ep": "p2", "file": "s1", "events": ["EPOLLIN"], "et": True},
    {"op": "wait", "ep": "p2"},
    {"op": "signal", "sig": "SIGUSR1", "value": 0},
    {"op": "wait", "ep": "p2"},
    {"op": "signal", "sig": "SIGUSR2", "value": 0},
    {"op": "wait", "ep": "p2"},
    {"op": "wait", "ep": "p2"},
]


# epoll(7): the interest list is keyed by fd and file description; a dup can be added
# beside the original, and an item outlives the close of its fd while a dup keeps the
# description open ("events may be reported for that file descriptor").
DUP = [
    {"op": "eventfd", "id": "e1", "initval": 0, "semaphore": False},
    {"op": "epoll", "id": "p2"},
    {"op": "add", "ep": "p2", "file": "e1", "events": ["EPOLLIN"]},
    {"op": "dup", "obj": "e1", "id": "e3"},
    {"op": "add", "ep": "p2", "file": "e3", "events": ["EPOLLIN"]},
    {"op": "write", "file": "e3", "value": 1},
    {"op": "wait", "ep": "p2"},
    {"op": "close", "obj": "e1"},
    {"op": "wait", "ep": "p2"},
    {"op": "del", "ep": "p2", "file": "e3"},
    {"op": "wait", "ep": "p2"},
    {"op": "close", "obj": "e3"},
    {"op": "wait", "ep": "p2"},
]


@pytest.fixture
def clean_signals():
    """The program must leave no signal pending and the thread's mask as it was."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert not set(signalfd_model.SIGNALS.values()) & signal.sigpending()


@pytest.mark.parametrize("program", [SIGNAL_ORDER, TIMER, EDGE, DUP],
                         ids=["order", "timer", "edge", "dup"])
def test_timerfd_and_signalfd_programs_agree_with_the_kernel(program, clean_signals):
    outcome = run_program(program)
    assert outcome.status == "conforms", outcome.message


def test_the_mixed_model_agrees_with_the_kernel():
    loaded = load_text(NOTIFY_SPEC, "model.yaml")
    verdict = check_behaviour(loaded.behaviours[0], Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


def _reversed(res):
    if res.ok and res.value:
        res.value = dict(enumerate(reversed(list(res.value.values()))))
    return res


def _first_twice(res):
    if res.ok and len(res.value) > 1:
        res.value[1] = dict(res.value[0])
    return res


def _last_lost(res):
    if res.ok and len(res.value) > 1:
        res.value.pop(len(res.value) - 1)
        res.ret -= 128
    return res


def _other_sender(res):
    if res.ok and res.value:
        res.value[0]["pid"] += 1
    return res


def _still_armed(res):
    if res.ok:
        res.value["value_ns"] = res.value["value_ns"] or 1000
    return res


def _nothing_reported(res):
    if res.ok:
        res.ret, res.value = 0, {}
    return res


class _ForgetsClosedFd:
    """From the second wait on (after e1 is closed), drops the item added under e1's fd.
    A class, so that each test gets a fresh count."""

    def __init__(self):
        self.waits = 0

    def __call__(self, res):
        self.waits += 1
        if self.waits > 1 and res.ok and 1 in (res.value or {}):
            del res.value[1]
            res.ret -= 1
        return res


# A kernel that answers wrongly (the adapter's answer altered) makes the program deviate,
# with a message that names the operation and what the model expected.
WRONG_KERNELS = {
    "signals out of order": (SIGNAL_ORDER, signalfd_adapter, "read_siginfo", _reversed,
                             ["operation 9 read(file=s1, records=2)", "model expects"]),
    "standard signal twice": (SIGNAL_ORDER, signalfd_adapter, "read_siginfo", _first_twice,
                              ["SIGUSR1", "model expects"]),
    "real-time signal lost": (SIGNAL_ORDER, signalfd_adapter, "read_siginfo", _last_lost,
                              ["1 record(s) read, the model expects 2"]),
    "record from another sender": (SIGNAL_ORDER, signalfd_adapter, "read_siginfo",
                                   _other_sender, ["record 0 (SIGUSR1): ssi_pid"]),
    "expired one-shot armed": (TIMER, timerfd_adapter, "timerfd_gettime", _still_armed,
                               ["operation 5 gettime(file=t1)", "'armed': True",
                                "'armed': False"]),
    "item dropped at close of a dup": (DUP, epoll_adapter, "epoll_wait", _ForgetsClosedFd,
                                       ["operation 9 wait(ep=p2)", "model expects a return of 2"]),
    "edge report missing": (EDGE, epoll_adapter, "epoll_wait", _nothing_reported,
                            ["operation 6 wait(ep=p2)", "model expects a return of 1"]),
}


@pytest.mark.parametrize("case", WRONG_KERNELS)
def test_a_wrong_kernel_answer_deviates(case, monkeypatch, clean_signals):
    program, module, name, change, fragments = WRONG_KERNELS[case]
    change = change() if isinstance(change, type) else change
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: change(real(*a, **kw)))
    outcome = run_program(program)
    assert outcome.status == "deviates"
    for fragment in fragments:
        assert fragment in outcome.message


def test_a_timer_that_never_shows_its_expiration_deviates(monkeypatch):
    monkeypatch.setattr("kit.model.program.EXPIRY_BOUND_MS", 50)
    monkeypatch.setattr(timerfd_adapter, "timerfd_settime",
                        lambda fd, *a, **kw: timerfd_adapter.Result(ret=0))  # never armed
    outcome = run_program(TIMER)
    assert outcome.status == "deviates"
    assert "showed no expiration within 50 ms" in outcome.message


def test_a_model_that_queues_standard_signals_is_caught(monkeypatch):
    monkeypatch.setattr(signalfd_model, "is_realtime", lambda name: True)
    loaded = load_text(NOTIFY_SPEC, "model.yaml")
    verdict = _search(loaded.behaviours[0])
    assert verdict.status == "deviates"
    program = verdict.counterexample["program"]
    assert sum(op["op"] == "signal" for op in program) >= 2
    assert "model expects" in verdict.message
    assert run_program(program).status == "deviates"     # the replay still disagrees


# -- nested instances, closed descriptors, short waits (model epoll_tree) -----------------

TREE_SPEC = SPEC.replace("model.test.sequences", "model.test.tree").replace(
    "model: eventfd_epoll", "model: epoll_tree")


def _eventfd(number: int, initval: int = 0) -> dict:
    return {"op": "eventfd", "id": f"e{number}", "initval": initval, "semaphore": False}


# epoll(7): an epoll fd "will indicate as being readable" while it has events waiting, and
# can be added to another instance: an edge-triggered outer item hears of each new event
# of the inner's items; a cycle is refused (ELOOP), the instance itself too (EINVAL).
NESTED = [
    _eventfd(1), {"op": "epoll", "id": "p2"}, {"op": "epoll", "id": "p3"},
    {"op": "add", "ep": "p2", "file": "e1", "events": ["EPOLLIN"]},
    {"op": "add", "ep": "p3", "file": "p2", "events": ["EPOLLIN"], "et": True},
    {"op": "poll", "file": "p2"}, {"op": "wait", "ep": "p3"},
    {"op": "write", "file": "e1", "value": 1},
    {"op": "poll", "file": "p2"}, {"op": "wait", "ep": "p3"}, {"op": "wait", "ep": "p3"},
    {"op": "write", "file": "e1", "value": 1}, {"op": "wait", "ep": "p3"},
    {"op": "add", "ep": "p2", "file": "p3", "events": ["EPOLLIN"]},
    {"op": "add", "ep": "p2", "file": "p2", "events": ["EPOLLIN"]},
    {"op": "wait", "ep": "p2"}, {"op": "read", "file": "e1"},
    {"op": "poll", "file": "p2"}, {"op": "wait", "ep": "p3"},
    {"op": "close", "obj": "p2"}, {"op": "wait", "ep": "p3"},
]

# epoll_wait(2): "Up to maxevents are returned", and "successive epoll_wait() calls will
# round robin through the set of ready file descriptors".
ROUND_ROBIN = [
    _eventfd(1, 1), _eventfd(2, 1), _eventfd(3, 1), {"op": "epoll", "id": "p4"},
    *[{"op": "add", "ep": "p4", "file": f"e{i}", "events": ["EPOLLIN"]} for i in (1, 2, 3)],
    {"op": "wait", "ep": "p4", "maxevents": 2}, {"op": "wait", "ep": "p4", "maxevents": 2},
    {"op": "wait", "ep": "p4", "maxevents": 1}, {"op": "wait", "ep": "p4", "maxevents": 1},
    {"op": "wait", "ep": "p4", "maxevents": 1}, {"op": "wait", "ep": "p4"},
]

# epoll(7), Questions and answers: the item of a closed descriptor lives on while a dup
# keeps the file open (reported with the original data); EPOLL_CTL_DEL through the closed
# number fails with EBADF, and once the number is reused it names another file (ENOENT).
CLOSED_NUMBER = [
    _eventfd(1), {"op": "epoll", "id": "p2"},
    {"op": "add", "ep": "p2", "file": "e1", "events": ["EPOLLIN"]},
    {"op": "dup", "obj": "e1", "id": "e3"}, {"op": "close", "obj": "e1"},
    {"op": "write", "file": "e3", "value": 1}, {"op": "wait", "ep": "p2"},
    {"op": "del", "ep": "p2", "file": "e1"}, _eventfd(4),
    {"op": "del", "ep": "p2", "file": "e1"},
    {"op": "add", "ep": "p2", "file": "e4", "events": ["EPOLLIN"]},
    {"op": "wait", "ep": "p2", "timeout": 5}, {"op": "close", "obj": "e3"},
    {"op": "wait", "ep": "p2", "timeout": 5},
]


@pytest.mark.parametrize("program", [NESTED, ROUND_ROBIN, CLOSED_NUMBER],
                         ids=["nested", "round_robin", "closed_number"])
def test_tree_programs_agree_with_the_kernel(program):
    outcome = run_program(program)
    assert outcome.status == "conforms", outcome.message


def test_the_tree_model_agrees_with_the_kernel():
    loaded = load_text(TREE_SPEC, "model.yaml")
    verdict = check_behaviour(loaded.behaviours[0], Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


def _without_data(data: int):
    """A kernel whose waits never report the item with this data."""
    def change(res):
        if res.ok and data in (res.value or {}):
            del res.value[data]
            res.ret -= 1
        return res
    return change


def _always_lowest(real):
    """A kernel that, short of room, always reports the lowest-numbered ready items (no
    round robin): it looks at every ready item and keeps the first ones."""
    def wait(epfd, maxevents=16, timeout=0, **kw):
        res = real(epfd, 64, timeout, **kw)
        if res.ok and res.ret > maxevents:
            res.value = dict(sorted(res.value.items())[:maxevents])
            res.ret = maxevents
        return res
    return wait


def _ctl_answer(errno_from: str, errno_to: str | None):
    def change(res):
        if res.errno == errno_from:
            res.ret, res.errno = (0, None) if errno_to is None else (-1, errno_to)
        return res
    return change


WRONG_TREE_KERNELS = {
    "nested instance never reported": (NESTED, "epoll_wait", _without_data(2),
                                       ["operation 10 wait(ep=p3)",
                                        "model expects a return of 1"]),
    "cycle accepted": (NESTED, "epoll_ctl", _ctl_answer("ELOOP", None),
                       ["operation 14 add(ep=p2, file=p3", "model expects failure with ELOOP"]),
    "closed number found": (CLOSED_NUMBER, "epoll_ctl", _ctl_answer("EBADF", "ENOENT"),
                            ["operation 8 del(ep=p2, file=e1)",
                             "model expects failure with EBADF"]),
    "item gone with the first close": (CLOSED_NUMBER, "epoll_wait", _without_data(1),
                                       ["operation 7 wait(ep=p2)",
                                        "model expects a return of 1"]),
}


@pytest.mark.parametrize("case", WRONG_TREE_KERNELS)
def test_a_wrong_tree_kernel_answer_deviates(case, monkeypatch):
    program, name, change, fragments = WRONG_TREE_KERNELS[case]
    real = getattr(epoll_adapter, name)
    monkeypatch.setattr(epoll_adapter, name, lambda *a, **kw: change(real(*a, **kw)))
    outcome = run_program(program)
    assert outcome.status == "deviates"
    for fragment in fragments:
        assert fragment in outcome.message, outcome.message


def test_a_kernel_without_round_robin_deviates(monkeypatch):
    monkeypatch.setattr(epoll_adapter, "epoll_wait", _always_lowest(epoll_adapter.epoll_wait))
    outcome = run_program(ROUND_ROBIN)
    assert outcome.status == "deviates"
    assert outcome.message.startswith("operation 9 wait(ep=p4, maxevents=2): reported [1, 2] "
                                      "while [3], ready and left out by the previous full "
                                      "wait, were not"), outcome.message


def test_a_wait_that_returns_before_its_timeout_deviates(monkeypatch):
    real = epoll_adapter.epoll_wait
    monkeypatch.setattr(epoll_adapter, "epoll_wait",
                        lambda epfd, maxevents=16, timeout=0, **kw: real(epfd, maxevents, 0))
    outcome = run_program(CLOSED_NUMBER)
    assert outcome.status == "deviates"
    assert "operation 14 wait(ep=p2, timeout=5): returned after" in outcome.message
    assert "before its timeout of 5 ms, with nothing ready" in outcome.message


# Several thorough searches: minutes on a loaded machine.
@pytest.mark.timeout(600)
def test_a_model_without_nesting_is_caught_with_a_short_program(monkeypatch):
    # A model in which news for an item is never news for the instance: an edge-triggered
    # outer item then never hears of its inner instance.
    from kit.model.program import Program

    monkeypatch.setattr(Program, "_news", lambda self, description, kind, certain: [
        model.event(description, kind, certain) for model in self.epolls.values()])
    loaded = load_text(TREE_SPEC, "model.yaml")
    verdict = _search(loaded.behaviours[0])
    assert verdict.status == "deviates"
    program = verdict.counterexample["program"]
    # 7 or 8 operations on a quiet machine; a loaded one has kept up to 13 (timed waits a
    # candidate needed to disagree in time), so the bound leaves room
    # the silent instance shows in a wait on it or a poll(2) of it, whichever the search met
    assert program[-1]["op"] in ("wait", "poll") and len(program) <= 16, program
    assert verdict.replay.startswith("kit replay model.test.tree --profile thorough --params ")
    assert run_program(program).status == "deviates"
    monkeypatch.undo()
    assert run_program(program).status == "conforms"


TREE_SHAPES = [
    ([_eventfd(1), {"op": "epoll", "id": "p2"}, {"op": "wait", "ep": "p2", "maxevents": 0}],
     "program operation 3: wait: maxevents must be an integer from 1 to 0x40, got 0"),
    ([{"op": "epoll", "id": "p1"}, {"op": "wait", "ep": "p1", "timeout": 51}],
     "program operation 2: wait: timeout must be an integer from 0 to 0x32, got 51"),
    ([_eventfd(1), {"op": "epoll", "id": "p2"}, {"op": "close", "obj": "e1"},
      {"op": "read", "file": "e1"}],
     "program operation 4: read: file 'e1' names no open object; it must name an open "
     "eventfd or timerfd or signalfd"),
    ([{"op": "epoll", "id": "p1"}, {"op": "del", "ep": "p1", "file": "e9"}],
     "program operation 2: del: file 'e9' names no open object; it must name an open "
     "eventfd or timerfd or signalfd or pipe or socket or epoll, or one closed before"),
    ([_eventfd(1), {"op": "close", "obj": "e1"}, _eventfd(1)],
     "program operation 3: eventfd: id 'e1' names an object closed before; names are not "
     "reused"),
    ([{"op": "epoll", "id": f"p{i}"} for i in range(5)],
     "program operation 5: epoll: more than 4 epoll instances open at once"),
]


@pytest.mark.parametrize("program, reason", TREE_SHAPES)
def test_a_tree_program_of_the_wrong_shape_is_refused(program, reason):
    from kit.model.shape import program_problem

    assert program_problem("epoll_tree", {"program": program}) == reason


def test_the_tree_programs_have_the_shape_replay_accepts():
    from kit.model.shape import program_problem

    for program in (NESTED, ROUND_ROBIN, CLOSED_NUMBER):
        assert program_problem("epoll_tree", {"program": program}) is None


# -- pipes and socket pairs: every event bit they produce (model pipes_sockets_epoll) ------

CHANNEL_SPEC = SPEC.replace("model.test.sequences", "model.test.channels").replace(
    "model: eventfd_epoll", "model: pipes_sockets_epoll")

# pipe(7), poll(2): data makes the read end readable; the write end polls EPOLLERR once
# the read end is closed, and writes fail with EPIPE; the read end polls EPOLLHUP once the
# write end is closed, and reads see end of file. Writing the read end is EBADF (write(2)).
PIPE_ENDS = [
    {"op": "pipe", "id": "r1", "peer": "w2"}, {"op": "epoll", "id": "p3"},
    {"op": "add", "ep": "p3", "file": "r1", "events": ["EPOLLIN"], "et": True},
    {"op": "add", "ep": "p3", "file": "w2", "events": ["EPOLLOUT"], "et": True},
    {"op": "wait", "ep": "p3"},
    {"op": "write_bytes", "file": "w2", "size": 3}, {"op": "wait", "ep": "p3"},
    {"op": "write_bytes", "file": "w2", "size": 1}, {"op": "wait", "ep": "p3"},
    {"op": "read_bytes", "file": "r1", "size": 64}, {"op": "wait", "ep": "p3"},
    {"op": "write_bytes", "file": "r1", "size": 1},
    {"op": "close", "obj": "w2"}, {"op": "wait", "ep": "p3"}, {"op": "poll", "file": "r1"},
    {"op": "read_bytes", "file": "r1", "size": 4},
    {"op": "pipe", "id": "r4", "peer": "w5"},
    {"op": "add", "ep": "p3", "file": "w5", "events": ["EPOLLOUT"], "et": True},
    {"op": "wait", "ep": "p3"}, {"op": "close", "obj": "r4"}, {"op": "wait", "ep": "p3"},
    {"op": "poll", "file": "w5"}, {"op": "write_bytes", "file": "w5", "size": 1},
]

# epoll_ctl(2): EPOLLRDHUP when the peer "shut down writing half of connection", with
# EPOLLIN (a read sees end of file); EPOLLHUP once both halves are shut down; a socket
# shut down for writing fails writes with EPIPE (send(2)). An item asking only for
# EPOLLPRI hears nothing but EPOLLERR and EPOLLHUP; a peer closed with unread data resets
# the connection (implementation: ECONNRESET once, then end of file).
SOCKET_ENDS = [
    {"op": "socketpair", "id": "u1", "peer": "u2"}, {"op": "epoll", "id": "p3"},
    {"op": "add", "ep": "p3", "file": "u1", "events": ["EPOLLIN", "EPOLLRDHUP"], "et": True},
    {"op": "add", "ep": "p3", "file": "u2", "events": ["EPOLLOUT"]},
    {"op": "write_bytes", "file": "u2", "size": 2}, {"op": "wait", "ep": "p3"},
    {"op": "shutdown", "file": "u2"}, {"op": "wait", "ep": "p3"},
    {"op": "read_bytes", "file": "u1", "size": 64},
    {"op": "read_bytes", "file": "u1", "size": 64},
    {"op": "write_bytes", "file": "u1", "size": 3}, {"op": "read_bytes", "file": "u2", "size": 1},
    {"op": "shutdown", "file": "u1"}, {"op": "wait", "ep": "p3"}, {"op": "poll", "file": "u2"},
    {"op": "write_bytes", "file": "u2", "size": 1},
    {"op": "socketpair", "id": "u4", "peer": "u5"},
    {"op": "add", "ep": "p3", "file": "u4", "events": ["EPOLLPRI"], "et": True},
    {"op": "write_bytes", "file": "u4", "size": 3}, {"op": "close", "obj": "u5"},
    {"op": "wait", "ep": "p3"}, {"op": "poll", "file": "u4"},
    {"op": "read_bytes", "file": "u4", "size": 4}, {"op": "read_bytes", "file": "u4", "size": 4},
]


# epoll(7): fork(2) duplicates descriptors too. A child that closes its copy of either end
# changes nothing for the parent's items (no EPOLLHUP, no EPOLLERR: the parent's
# descriptors keep both ends open); a byte it writes reaches the parent's read end.
FORKED = [
    {"op": "pipe", "id": "r1", "peer": "w2"}, {"op": "epoll", "id": "p3"},
    {"op": "add", "ep": "p3", "file": "r1", "events": ["EPOLLIN"], "et": True},
    {"op": "add", "ep": "p3", "file": "w2", "events": ["EPOLLOUT"]},
    {"op": "fork", "file": "w2", "then": "close"}, {"op": "wait", "ep": "p3"},
    {"op": "fork", "file": "w2", "then": "write_bytes"}, {"op": "wait", "ep": "p3"},
    {"op": "fork", "file": "r1", "then": "close"}, {"op": "poll", "file": "w2"},
    {"op": "read_bytes", "file": "r1", "size": 4},
]


@pytest.mark.parametrize("program", [PIPE_ENDS, SOCKET_ENDS, FORKED],
                         ids=["pipe", "socket", "fork"])
def test_channel_programs_agree_with_the_kernel(program):
    outcome = run_program(program)
    assert outcome.status == "conforms", outcome.message


def test_the_channel_model_agrees_with_the_kernel():
    loaded = load_text(CHANNEL_SPEC, "model.yaml")
    verdict = check_behaviour(loaded.behaviours[0], Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


def _without_bit(bit: int):
    """A kernel whose waits (or polls) never show this event bit."""
    def change(res):
        if res.ok and isinstance(res.value, dict):
            res.value = {d: e & ~bit for d, e in res.value.items()}
        elif res.ok and isinstance(res.value, int):
            res.value &= ~bit
        return res
    return change


def _reads_zero(res):
    if res.errno == "ECONNRESET":
        res.ret, res.errno, res.value = 0, None, 0
    return res


WRONG_CHANNEL_KERNELS = {
    "no EPOLLHUP at the read end": (PIPE_ENDS, epoll_adapter, "epoll_wait",
                                    _without_bit(0x10),
                                    ["operation 14 wait(ep=p3)", "kernel value {1: 0}"]),
    "no POLLERR at the write end": (PIPE_ENDS, poll_adapter, "poll", _without_bit(0x8),
                                    ["operation 22 poll(file=w5)", "model expects 12"]),
    "no EPOLLRDHUP after shutdown": (SOCKET_ENDS, epoll_adapter, "epoll_wait",
                                     _without_bit(0x2000),
                                     ["operation 8 wait(ep=p3)", "1: 8193"]),
    "no reset after unread data": (SOCKET_ENDS, sockets_adapter, "read_bytes", _reads_zero,
                                   ["operation 23 read_bytes(file=u4, size=4)",
                                    "model expects failure with ECONNRESET"]),
    # The child inherits the altered adapter: its write "writes nothing".
    "a forked child's write lost": (FORKED, sockets_adapter, "write_bytes",
                                    lambda res: Result(ret=0, value=0),
                                    ["operation 7 fork(file=w2, then=write_bytes)",
                                     "kernel returned 0, model expects a return of 1"]),
}


@pytest.mark.parametrize("case", WRONG_CHANNEL_KERNELS)
def test_a_wrong_channel_kernel_answer_deviates(case, monkeypatch):
    program, module, name, change, fragments = WRONG_CHANNEL_KERNELS[case]
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: change(real(*a, **kw)))
    outcome = run_program(program)
    assert outcome.status == "deviates"
    for fragment in fragments:
        assert fragment in outcome.message, outcome.message


# Several thorough searches: minutes on a loaded machine.
@pytest.mark.timeout(600)
def test_a_model_without_hang_up_is_caught_with_a_short_program(monkeypatch):
    import kit.model.channels as channels

    real = channels.PipeEnd.readiness
    monkeypatch.setattr(channels.PipeEnd, "readiness",
                        lambda self: real(self) & ~channels.EPOLLHUP)
    loaded = load_text(CHANNEL_SPEC, "model.yaml")
    verdict = _search(loaded.behaviours[0])
    assert verdict.status == "deviates"
    program = verdict.counterexample["program"]
    assert len(program) <= 6, program
    assert {"op": "close", "obj": program[0]["peer"]} in program     # the write end closed
    assert run_program(program).status == "deviates"
    monkeypatch.undo()
    assert run_program(program).status == "conforms"


def test_channel_programs_have_the_shape_replay_accepts():
    from kit.model.shape import program_problem

    for program in (PIPE_ENDS, SOCKET_ENDS, FORKED):
        assert program_problem("pipes_sockets_epoll", {"program": program}) is None
    assert program_problem("pipes_sockets_epoll", {"program": [
        {"op": "pipe", "id": "r1", "peer": "w2"}, {"op": "shutdown", "file": "r1"}]}) == (
        "program operation 2: shutdown: file 'r1' names a pipe; it must name an open socket")
    assert program_problem("pipes_sockets_epoll", {"program": [
        {"op": "socketpair", "id": "u1", "peer": "u2"},
        {"op": "write_bytes", "file": "u1", "size": 17}]}) == (
        "program operation 2: write_bytes: size must be an integer from 1 to 0x10, got 17")
    assert "unknown operation 'pipe'" in program_problem("eventfd_epoll", {"program": [
        {"op": "pipe", "id": "r1", "peer": "w2"}]})


# -- waits that block (model epoll_waiters) -----------------------------------------------

WAITERS_SPEC = SPEC.replace("model.test.sequences", "model.test.waiters").replace(
    "model: eventfd_epoll", "model: epoll_waiters")

# epoll_wait(2): a call "will block until either: a file descriptor delivers an event; ...
# or the timeout expires"; a waiter blocked on an instance is woken by a write to a file
# it watches, directly or through an inner instance, and by "another thread" adding a
# ready descriptor to it. Each waiter is judged after the operation that follows it.
WAITERS = [
    _eventfd(1), {"op": "epoll", "id": "p2"}, {"op": "epoll", "id": "p3"},
    {"op": "add", "ep": "p2", "file": "e1", "events": ["EPOLLIN"], "et": True},
    {"op": "add", "ep": "p3", "file": "p2", "events": ["EPOLLIN"], "et": True},
    {"op": "waiter", "ep": "p2", "timeout": 50}, {"op": "write", "file": "e1", "value": 1},
    {"op": "waiter", "ep": "p3", "timeout": 50}, {"op": "write", "file": "e1", "value": 1},
    {"op": "waiter", "ep": "p2", "timeout": 50}, {"op": "wait", "ep": "p3"},
    _eventfd(4, 1), {"op": "waiter", "ep": "p2", "timeout": 50},
    {"op": "add", "ep": "p2", "file": "e4", "events": ["EPOLLIN"]},
    {"op": "waiter", "ep": "p2", "timeout": 50, "maxevents": 1},
    {"op": "read", "file": "e4"}, {"op": "waiter", "ep": "p2", "timeout": 50},
    {"op": "read", "file": "e4"}, {"op": "wait", "ep": "p2", "timeout": 5},
]


def test_waiter_programs_agree_with_the_kernel():
    outcome = run_program(WAITERS)
    assert outcome.status == "conforms", outcome.message
    # Judged after operations 7, 9, 14, 18, woken by the first three. (On a machine so
    # loaded that a waiter's 50 ms pass before the program goes on, a waiter is judged as
    # a wait that timed out: still conforming, seen here as fewer blocked or woken ones.)
    blocked = {r.line: r.result["value"] for r in outcome.records
               if "(blocked; after the next operation)" in r.call}
    assert set(blocked) <= {6, 8, 13, 17}, blocked
    woken = {6: {1: 1}, 8: {2: 1}, 13: {4: 1}}
    assert any(blocked.get(line) == value for line, value in woken.items()), blocked


def test_the_waiters_model_agrees_with_the_kernel():
    loaded = load_text(WAITERS_SPEC, "model.yaml")
    verdict = check_behaviour(loaded.behaviours[0], Target.current(), profile="default")
    assert verdict.status == "conforms", verdict.message


def test_a_waiter_that_is_never_woken_deviates(monkeypatch):
    # A kernel whose blocking waits sleep through their wake-up and come back empty, well
    # after the program went on (a lost wake-up, as the waiter sees it).
    import time

    real = epoll_adapter.epoll_wait

    def lost(epfd, maxevents=16, timeout=0, **kw):
        res = real(epfd, maxevents, timeout, **kw)
        if timeout > 0 and res.ok and res.ret:
            time.sleep(0.5)
            res.ret, res.value = 0, {}
        return res

    monkeypatch.setattr(epoll_adapter, "epoll_wait", lost)
    outcome = run_program(WAITERS)
    assert outcome.status == "deviates"
    assert outcome.message == ("operation 6 waiter(ep=p2, timeout=50): returned 0 although [1] "
                               "became ready: the blocked waiter was not woken")


def test_a_waiter_that_does_not_block_deviates(monkeypatch):
    real = epoll_adapter.epoll_wait
    monkeypatch.setattr(epoll_adapter, "epoll_wait",
                        lambda epfd, maxevents=16, timeout=0, **kw: real(epfd, maxevents, 0))
    outcome = run_program(WAITERS)
    assert outcome.status == "deviates"
    assert outcome.message.startswith("operation 6 waiter(ep=p2, timeout=50): returned after ")
    assert outcome.message.endswith("before its timeout of 50 ms, with nothing ready")


def test_a_waiter_blocked_by_the_last_operation_is_judged_too(monkeypatch):
    # No operation follows it: it is judged when it returns. A kernel whose blocking
    # waits give up at half their timeout, with nothing ready, is caught there as well.
    real = epoll_adapter.epoll_wait

    def early(epfd, maxevents=16, timeout=0, **kw):
        return real(epfd, maxevents, timeout // 2 if timeout > 0 else timeout, **kw)

    assert WAITERS[5] == {"op": "waiter", "ep": "p2", "timeout": 50}
    assert run_program(WAITERS[:6]).status == "conforms"
    monkeypatch.setattr(epoll_adapter, "epoll_wait", early)
    outcome = run_program(WAITERS[:6])
    assert outcome.status == "deviates"
    assert outcome.message.startswith("operation 6 waiter(ep=p2, timeout=50): returned after ")
    assert outcome.message.endswith("before its timeout of 50 ms, with nothing ready")


def test_a_waiter_left_blocked_by_a_failing_program_is_joined(monkeypatch):
    # The operation after the waiter disagrees: the waiter thread still ends with the
    # program (no thread outlives it, whatever failed).
    import threading

    monkeypatch.setattr(eventfd_model, "COUNTER_MAX", 0)
    outcome = run_program(WAITERS[:7])
    assert outcome.status == "deviates"
    assert outcome.message.startswith("operation 7 write(file=e1, value=1)")
    assert not [t for t in threading.enumerate() if t.name.startswith("model-waiter")]


def test_waiter_programs_have_the_shape_replay_accepts():
    from kit.model.shape import program_problem

    assert program_problem("epoll_waiters", {"program": WAITERS}) is None
    assert program_problem("epoll_waiters", {"program": [
        {"op": "epoll", "id": "p1"}, {"op": "waiter", "ep": "p1", "timeout": 0}]}) == (
        "program operation 2: waiter: timeout must be an integer from 1 to 0x32, got 0")
    assert "unknown operation 'waiter'" in program_problem("epoll_tree", {"program": [
        {"op": "epoll", "id": "p1"}, {"op": "waiter", "ep": "p1", "timeout": 5}]})


@pytest.mark.parametrize("bid, program, reason", [
    ("model.epoll_tree.random_sequences",
     [{"op": "epoll", "id": "p1"}, {"op": "wait", "ep": "p1", "maxevents": 0}],
     "program operation 2: wait: maxevents must be an integer from 1 to 0x40, got 0"),
    ("model.pipes_sockets_epoll.random_sequences",
     [{"op": "pipe", "id": "r1", "peer": "w2"}, {"op": "fork", "file": "r1", "then": "exec"}],
     "program operation 2: fork: then must be one of close, write_bytes, got 'exec'"),
    ("model.epoll_waiters.random_sequences",
     [{"op": "epoll", "id": "p1"}, {"op": "waiter", "ep": "p1", "timeout": 500}],
     "program operation 2: waiter: timeout must be an integer from 1 to 0x32, got 500"),
])
def test_kit_replay_refuses_a_new_operation_of_the_wrong_shape(bid, program, reason):
    """As a user sees it: exit 3, the reason, and nothing run."""
    from helpers import REPO, run_python

    ran = run_python(["-m", "kit", "replay", bid, "--params", json.dumps({"program": program})],
                     cwd=REPO)
    assert ran.ret == 3, ran.output
    assert reason in ran.stderr
    assert ran.stdout == ""
