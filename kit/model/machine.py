"""The Hypothesis stateful test: random programs of create / ctl / write / read / wait /
poll / close, checked operation by operation against the reference model."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from kit.model.program import Program

MAX_EVENTFDS, MAX_EPOLLS = 3, 2
# Values around the counter's limits, where the documented rules bite.
WRITE_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFD, 0xFFFFFFFFFFFFFFFF,
                     0x7FFFFFFFFFFFFFFF]),
    st.integers(0, 0xFFFFFFFFFFFFFFFF))
EVENTS = st.lists(st.sampled_from(["EPOLLIN", "EPOLLOUT"]), min_size=1, max_size=2,
                  unique=True).map(sorted)


class EventfdEpollMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.program = Program()
        self.counter = 0

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _open(self, kind: str) -> list[str]:
        models = self.program.eventfds if kind == "e" else self.program.epolls
        return sorted(models)

    @initialize(initval=st.sampled_from([0, 1, 0xFFFFFFFF]), semaphore=st.booleans(),
                watch=st.booleans(), events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def start(self, initval, semaphore, watch, events, et, oneshot):
        # Most interesting programs need an eventfd watched by an epoll instance.
        self.eventfd(initval, semaphore)
        self.epoll()
        if watch:
            self.program.apply({"op": "add", "ep": "p2", "efd": "e1", "events": events,
                                "et": et, "oneshot": oneshot})

    @precondition(lambda self: len(self.program.eventfds) < MAX_EVENTFDS)
    @rule(initval=st.sampled_from([0, 1, 5, 0xFFFFFFFF]), semaphore=st.booleans())
    def new_eventfd(self, initval, semaphore):
        self.eventfd(initval, semaphore)

    def eventfd(self, initval, semaphore):
        self.program.apply({"op": "eventfd", "id": self._name("e"), "initval": initval,
                            "semaphore": semaphore})

    @precondition(lambda self: len(self.program.epolls) < MAX_EPOLLS)
    @rule()
    def new_epoll(self):
        self.epoll()

    def epoll(self):
        self.program.apply({"op": "epoll", "id": self._name("p")})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data(), value=WRITE_VALUES)
    def write(self, data, value):
        target = data.draw(st.sampled_from(self._open("e")), label="efd")
        self.program.apply({"op": "write", "efd": target, "value": value})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data())
    def read(self, data):
        self.program.apply({"op": "read", "efd": data.draw(st.sampled_from(self._open("e")))})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data())
    def poll(self, data):
        self.program.apply({"op": "poll", "efd": data.draw(st.sampled_from(self._open("e")))})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data(), value=st.integers(0, 3))
    def write_small(self, data, value):
        self.write(data, value)

    def _ctl(self, data, kind: str, **settings) -> None:
        op = {"op": kind, "ep": data.draw(st.sampled_from(self._open("p")), label="ep"),
              "efd": data.draw(st.sampled_from(self._open("e")), label="efd"), **settings}
        self.program.apply(op)

    @precondition(lambda self: self.program.eventfds and self.program.epolls)
    @rule(data=st.data(), events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def add(self, data, events, et, oneshot):
        self._ctl(data, "add", events=events, et=et, oneshot=oneshot)

    @precondition(lambda self: self.program.eventfds and self.program.epolls)
    @rule(data=st.data(), events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def mod(self, data, events, et, oneshot):
        self._ctl(data, "mod", events=events, et=et, oneshot=oneshot)

    @precondition(lambda self: self.program.eventfds and self.program.epolls)
    @rule(data=st.data())
    def delete(self, data):
        self._ctl(data, "del")

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data())
    def wait(self, data):
        self.program.apply({"op": "wait", "ep": data.draw(st.sampled_from(self._open("p")))})

    @precondition(lambda self: self.program.fd)
    @rule(data=st.data())
    def close(self, data):
        self.program.apply({"op": "close", "obj": data.draw(st.sampled_from(sorted(
            self.program.fd)))})

    def teardown(self):
        self.program.close_all()
