"""The Hypothesis stateful tests: random programs of create / ctl / write / read / wait /
poll / close (and, with timerfds and signalfds, settime / gettime / signal / setmask),
checked operation by operation against the reference model."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from kit.model.channels import PipeEnd, SocketEnd
from kit.model.eventfd import EventfdModel
from kit.model.program import CLOCKS, Program
from kit.model.signalfd import SIGNALS, SignalfdModel
from kit.model.timerfd import TimerfdModel

MAX_EVENTFDS, MAX_EPOLLS, MAX_TIMERFDS, MAX_SIGNALFDS = 3, 2, 2, 2
MAX_FDS = 10
# Three instances nest two levels deep at most: the depth limit is the nesting specs' subject.
MAX_NESTED_EPOLLS = 3
# Signals queued at once stay below POSIX's _POSIX_SIGQUEUE_MAX (32): queue limits are not
# this model's subject, and Linux's RLIMIT_SIGPENDING counts every process of the user.
MAX_QUEUED = 31
# Values around the counter's limits, where the documented rules bite.
WRITE_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFD, 0xFFFFFFFFFFFFFFFF,
                     0x7FFFFFFFFFFFFFFF]),
    st.integers(0, 0xFFFFFFFFFFFFFFFF))
EVENTS = st.lists(st.sampled_from(["EPOLLIN", "EPOLLOUT"]), min_size=1, max_size=2,
                  unique=True).map(sorted)
SIGNAL_MASKS = st.lists(st.sampled_from(sorted(SIGNALS)), max_size=3, unique=True).map(sorted)
SIGNAL_VALUES = st.integers(0, 0x7FFFFFFF)


class EventfdEpollMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.program = Program()
        self.counter = 0

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _open(self, kind: type | None = None) -> list[str]:
        """Names of the open watched files (of one model kind), or of epolls (kind None)."""
        if kind is None:
            return sorted(self.program.epolls)
        return sorted(k for k, m in self.program.files.items() if isinstance(m, kind))

    def _draw(self, data, kind: type | None, label: str) -> str:
        return data.draw(st.sampled_from(self._open(kind)), label=label)

    @initialize(initval=st.sampled_from([0, 1, 0xFFFFFFFF]), semaphore=st.booleans(),
                events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def start(self, initval, semaphore, events, et, oneshot):
        # Most interesting programs need an eventfd watched by an epoll instance (what a
        # counterexample does not need, kit.model.minimise removes).
        watched, ep = self.eventfd(initval, semaphore), self.epoll()
        self.program.apply({"op": "add", "ep": ep, "file": watched, "events": events,
                            "et": et, "oneshot": oneshot})

    @precondition(lambda self: len(self.program.eventfds) < MAX_EVENTFDS)
    @rule(initval=st.sampled_from([0, 1, 5, 0xFFFFFFFF]), semaphore=st.booleans())
    def new_eventfd(self, initval, semaphore):
        self.eventfd(initval, semaphore)

    def eventfd(self, initval, semaphore) -> str:
        name = self._name("e")
        self.program.apply({"op": "eventfd", "id": name, "initval": initval,
                            "semaphore": semaphore})
        return name

    @precondition(lambda self: len(self.program.epolls) < MAX_EPOLLS)
    @rule()
    def new_epoll(self):
        self.epoll()

    def epoll(self) -> str:
        name = self._name("p")
        self.program.apply({"op": "epoll", "id": name})
        return name

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data(), value=WRITE_VALUES)
    def write(self, data, value):
        self.program.apply({"op": "write", "file": self._draw(data, EventfdModel, "efd"),
                            "value": value})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data(), value=st.integers(0, 3))
    def write_small(self, data, value):
        self.write(data, value)

    # -- every watched file ----------------------------------------------------------------

    @precondition(lambda self: self.program.files)
    @rule(data=st.data())
    def read(self, data):
        self.program.apply({"op": "read", "file": self._draw(data, object, "file")})

    @precondition(lambda self: self.program.files)
    @rule(data=st.data())
    def poll(self, data):
        self.program.apply({"op": "poll", "file": self._draw(data, object, "file")})

    def _ctl(self, data, kind: str, **settings) -> None:
        op = {"op": kind, "ep": self._draw(data, None, "ep"),
              "file": self._draw(data, object, "file"), **settings}
        self.program.apply(op)

    @precondition(lambda self: self.program.files and self.program.epolls)
    @rule(data=st.data(), events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def add(self, data, events, et, oneshot):
        self._ctl(data, "add", events=events, et=et, oneshot=oneshot)

    @precondition(lambda self: self.program.files and self.program.epolls)
    @rule(data=st.data(), events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def mod(self, data, events, et, oneshot):
        self._ctl(data, "mod", events=events, et=et, oneshot=oneshot)

    @precondition(lambda self: self.program.files and self.program.epolls)
    @rule(data=st.data())
    def delete(self, data):
        self._ctl(data, "del")

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data())
    def wait(self, data):
        self.program.apply({"op": "wait", "ep": self._draw(data, None, "ep")})

    @precondition(lambda self: self.program.files and len(self.program.fd) < MAX_FDS)
    @rule(data=st.data())
    def dup(self, data):
        # A second descriptor for the same open file description: epoll(7) keys its
        # interest list by both, and keeps an item until the description's last close.
        watched = self._draw(data, object, "file")
        self.program.apply({"op": "dup", "obj": watched, "id": self._name(watched[0])})

    @precondition(lambda self: self.program.fd)
    @rule(data=st.data())
    def close(self, data):
        self.program.apply({"op": "close", "obj": data.draw(st.sampled_from(sorted(
            self.program.fd)))})

    def teardown(self):
        try:
            self.program.finish()
        finally:
            self.program.close_all()


class TimerfdSignalfdEpollMachine(EventfdEpollMachine):
    """The eventfd/epoll programs, plus timerfds that expire at once or in an hour and
    signalfds over signals sent to the program's own thread."""

    # Replaces the eventfd start: a signalfd and a timerfd watched by one epoll instance.
    # Counterexamples are cut down afterwards (kit.model.minimise), so a rich start costs
    # nothing in the report.
    @initialize(mask=SIGNAL_MASKS, clock=st.sampled_from(CLOCKS), watch=st.tuples(
        EVENTS, st.booleans(), st.booleans()), watch_timer=st.tuples(EVENTS, st.booleans(),
                                                                     st.booleans()))
    def start(self, mask, clock, watch, watch_timer):
        signals, timer, ep = self.signalfd(mask), self.timerfd(clock), self.epoll()
        for name, (events, et, oneshot) in ((signals, watch), (timer, watch_timer)):
            self.program.apply({"op": "add", "ep": ep, "file": name, "events": events,
                                "et": et, "oneshot": oneshot})

    def timerfd(self, clock: str) -> str:
        name = self._name("t")
        self.program.apply({"op": "timerfd", "id": name, "clock": clock})
        return name

    def signalfd(self, mask: list[str]) -> str:
        name = self._name("s")
        self.program.apply({"op": "signalfd", "id": name, "mask": mask})
        return name

    @precondition(lambda self: len(self._open(TimerfdModel)) < MAX_TIMERFDS)
    @rule(clock=st.sampled_from(CLOCKS))
    def new_timerfd(self, clock):
        self.timerfd(clock)

    @precondition(lambda self: len(self._open(SignalfdModel)) < MAX_SIGNALFDS)
    @rule(mask=SIGNAL_MASKS)
    def new_signalfd(self, mask):
        self.signalfd(mask)

    @precondition(lambda self: self._open(TimerfdModel))
    @rule(data=st.data(), when=st.sampled_from(["now", "now", "later", "never"]),
          periodic=st.booleans(), abstime=st.booleans())
    def settime(self, data, when, periodic, abstime):
        self.program.apply({"op": "settime", "file": self._draw(data, TimerfdModel, "tfd"),
                            "when": when, "periodic": periodic, "abstime": abstime})

    @precondition(lambda self: self._open(TimerfdModel))
    @rule(data=st.data())
    def gettime(self, data):
        self.program.apply({"op": "gettime", "file": self._draw(data, TimerfdModel, "tfd")})

    def room_to_queue(self) -> bool:
        pending = self.program.pending
        return len(pending.standard) + len(pending.realtime) < MAX_QUEUED

    @precondition(room_to_queue)
    @rule(sig=st.sampled_from(sorted(SIGNALS)), value=SIGNAL_VALUES)
    def signal(self, sig, value):
        self.program.apply({"op": "signal", "sig": sig, "value": value})

    @precondition(lambda self: self.room_to_queue() and any(
        self.program.files[k].mask for k in self._open(SignalfdModel)))
    @rule(data=st.data(), value=SIGNAL_VALUES)
    def signal_in_a_mask(self, data, value):
        # Most of what a signalfd promises needs a signal it watches.
        masks = sorted({n for k in self._open(SignalfdModel) for n in self.program.files[k].mask})
        self.signal(data.draw(st.sampled_from(masks), label="sig"), value)

    @precondition(lambda self: self._open(SignalfdModel))
    @rule(data=st.data(), mask=SIGNAL_MASKS)
    def setmask(self, data, mask):
        self.program.apply({"op": "setmask", "file": self._draw(data, SignalfdModel, "sfd"),
                            "mask": mask})

    @precondition(lambda self: self._open(SignalfdModel))
    @rule(data=st.data(), records=st.integers(1, 4))
    def read_signals(self, data, records):
        self.program.apply({"op": "read", "file": self._draw(data, SignalfdModel, "sfd"),
                            "records": records})


class EpollTreeMachine(EventfdEpollMachine):
    """The eventfd/epoll programs, plus epoll instances inside epoll instances (one or two
    levels, cycles refused with ELOOP), EPOLL_CTL_DEL through the number of a closed
    descriptor, and waits with room for fewer events than are ready."""

    # Two eventfds in an inner instance, the inner and one of the eventfds in an outer one:
    # the start of most of what nesting and short waits can get wrong (kit.model.minimise
    # drops what a counterexample does not need).
    @initialize(initvals=st.tuples(st.sampled_from([0, 1]), st.sampled_from([0, 1])),
                inner=st.tuples(EVENTS, st.booleans(), st.booleans()),
                outer=st.tuples(st.booleans(), st.booleans()))
    def start(self, initvals, inner, outer):
        first, second = (self.eventfd(initval, False) for initval in initvals)
        inner_ep, outer_ep = self.epoll(), self.epoll()
        events, et, oneshot = inner
        for watched in (first, second):
            self.program.apply({"op": "add", "ep": inner_ep, "file": watched,
                                "events": events, "et": et, "oneshot": oneshot})
        et, oneshot = outer
        for watched in (inner_ep, second):
            self.program.apply({"op": "add", "ep": outer_ep, "file": watched,
                                "events": ["EPOLLIN"], "et": et, "oneshot": oneshot})

    @precondition(lambda self: self.program.eventfds)
    @rule(data=st.data())
    def write_one(self, data):
        # Readiness is what nesting and short waits are about: most writes should make it.
        self.write(data, 1)

    @precondition(lambda self: len(self.program.epolls) < MAX_NESTED_EPOLLS)
    @rule()
    def new_epoll(self):
        self.epoll()

    def _two_epolls(self, data) -> tuple[str, str]:
        # Mostly two different instances; now and then the same (EINVAL).
        ep = self._draw(data, None, "ep")
        others = [e for e in self._open(None) if e != ep] or [ep]
        return ep, data.draw(st.sampled_from(others), label="inner")

    @precondition(lambda self: len(self.program.epolls) >= 1)
    @rule(data=st.data(), kind=st.sampled_from(["add", "add", "mod", "del"]),
          events=EVENTS, et=st.booleans(), oneshot=st.booleans())
    def nest(self, data, kind, events, et, oneshot):
        ep, inner = self._two_epolls(data)
        op = {"op": kind, "ep": ep, "file": inner}
        if kind != "del":
            op.update(events=events, et=et, oneshot=oneshot)
        self.program.apply(op)

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data())
    def poll_epoll(self, data):
        self.program.apply({"op": "poll", "file": self._draw(data, None, "ep")})

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data(), room=st.integers(1, 3))
    def wait_some(self, data, room):
        self.program.apply({"op": "wait", "ep": self._draw(data, None, "ep"),
                            "maxevents": room})

    @precondition(lambda self: self.program.epolls and self.program.closed)
    @rule(data=st.data())
    def del_closed(self, data):
        # Through the number the closed descriptor had: EBADF, or whatever file has the
        # number now.
        closed = data.draw(st.sampled_from(sorted(self.program.closed)), label="closed")
        self.program.apply({"op": "del", "ep": self._draw(data, None, "ep"), "file": closed})


# Every event bit an item can ask for; EPOLLERR and EPOLLHUP are always reported.
ALL_EVENTS = st.lists(st.sampled_from(["EPOLLIN", "EPOLLOUT", "EPOLLRDHUP", "EPOLLPRI"]),
                      min_size=1, max_size=3, unique=True).map(sorted)
MAX_CHANNELS = 2          # pipes and socket pairs open at once
MAX_FORKS = 1             # forked children per program


class PipesSocketsEpollMachine(EventfdEpollMachine):
    """Programs over pipes and UNIX stream socket pairs in epoll instances: a few bytes
    written and read, ends closed (EPOLLHUP on a pipe's read end, EPOLLERR on its write
    end), sockets shut down for writing (EPOLLRDHUP, then EPOLLHUP), dup and close of
    watched ends."""

    # A pipe and a socket pair, three of the four ends watched by one instance.
    @initialize(watch=st.lists(st.tuples(ALL_EVENTS, st.booleans(), st.booleans()),
                               min_size=3, max_size=3))
    def start(self, watch):
        read, write = self.pipe()
        a, _ = self.socketpair()
        ep = self.epoll()
        for name, (events, et, oneshot) in zip((read, write, a), watch):
            self.program.apply({"op": "add", "ep": ep, "file": name, "events": events,
                                "et": et, "oneshot": oneshot})

    def _channels(self) -> list[str]:
        return sorted(k for k, m in self.program.files.items()
                      if isinstance(m, (PipeEnd, SocketEnd)))

    def _pairs_open(self) -> int:
        return len({id(getattr(m, "pipe", None) or m.pair) for m in self.program.files.values()
                    if isinstance(m, (PipeEnd, SocketEnd))})

    def pipe(self) -> tuple[str, str]:
        read, write = self._name("r"), self._name("w")
        self.program.apply({"op": "pipe", "id": read, "peer": write})
        return read, write

    def socketpair(self) -> tuple[str, str]:
        a, b = self._name("u"), self._name("u")
        self.program.apply({"op": "socketpair", "id": a, "peer": b})
        return a, b

    @precondition(lambda self: False)     # no eventfds here: the other models have them
    @rule()
    def new_eventfd(self):
        pass

    @precondition(lambda self: self._pairs_open() < MAX_CHANNELS)
    @rule(kind=st.sampled_from(["pipe", "socketpair"]))
    def new_channel(self, kind):
        getattr(self, kind)()

    def _ends(self, reading: bool) -> list[str]:
        """Ends open for reading (or writing): a pipe's one end, a socket's both. (The
        wrong end, EBADF, is tests/test_model.py's.)"""
        return [k for k in self._channels() if getattr(self.program.files[k], "reading",
                                                        reading) == reading]

    @precondition(lambda self: self._ends(reading=False))
    @rule(data=st.data(), size=st.integers(1, 16))
    def write_bytes(self, data, size):
        self.program.apply({"op": "write_bytes", "size": size, "file": data.draw(
            st.sampled_from(self._ends(reading=False)), label="end")})

    @precondition(lambda self: self._ends(reading=True))
    @rule(data=st.data(), size=st.sampled_from([1, 4, 64]))
    def read(self, data, size):
        self.program.apply({"op": "read_bytes", "size": size, "file": data.draw(
            st.sampled_from(self._ends(reading=True)), label="end")})

    # A fork costs milliseconds (tens on a loaded machine): one a program shows what it does.
    @precondition(lambda self: self._channels() and
                  sum(op["op"] == "fork" for op in self.program.ops) < MAX_FORKS)
    @rule(data=st.data(), then=st.sampled_from(["close", "write_bytes"]))
    def fork(self, data, then):
        # A forked child closes its copy of an end, or writes through it.
        writable = self._ends(reading=False)
        if not writable:
            then = "close"
        self.program.apply({"op": "fork", "then": then, "file": data.draw(
            st.sampled_from(writable if then == "write_bytes" else self._channels()),
            label="end")})

    @precondition(lambda self: self._open(SocketEnd))
    @rule(data=st.data())
    def shutdown(self, data):
        self.program.apply({"op": "shutdown", "file": self._draw(data, SocketEnd, "socket")})

    @precondition(lambda self: self.program.files and self.program.epolls)
    @rule(data=st.data(), events=ALL_EVENTS, et=st.booleans(), oneshot=st.booleans())
    def add(self, data, events, et, oneshot):
        self._ctl(data, "add", events=events, et=et, oneshot=oneshot)

    @precondition(lambda self: self.program.files and self.program.epolls)
    @rule(data=st.data(), events=ALL_EVENTS, et=st.booleans(), oneshot=st.booleans())
    def mod(self, data, events, et, oneshot):
        self._ctl(data, "mod", events=events, et=et, oneshot=oneshot)


class EpollWaitersMachine(EpollTreeMachine):
    """The nested-instance programs with waits that block: a waiter thread blocked in
    epoll_wait (woken, or not, by the program's next operation) and waits with a timeout
    in the program's own thread. Timeouts stay small: a waiter nothing wakes costs its
    whole timeout."""

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data(), timeout=st.sampled_from([3, 10]), room=st.sampled_from([1, 64]),
          then_write=st.booleans())
    def waiter(self, data, timeout, room, then_write):
        ep = self._draw(data, None, "ep")
        self.program.apply({"op": "waiter", "ep": ep, "timeout": timeout, "maxevents": room})
        watched = self._watched_eventfds(ep)
        if then_write and watched:
            # Half the time the next operation writes an eventfd the instance watches
            # (directly or through an inner one), which most often wakes the waiter.
            self.program.apply({"op": "write", "file": data.draw(st.sampled_from(watched),
                                                                 label="efd"), "value": 1})

    def _watched_eventfds(self, ep: str) -> list[str]:
        program = self.program
        seen, todo = set(), [ep]
        while todo:
            name = todo.pop()
            if name not in seen and name in program.epolls:
                seen.add(name)
                todo.extend(program.epolls[name].watches())
        descriptions = set().union(*(program.epolls[n].watches() for n in seen))
        return sorted(k for k in program.eventfds if program.description[k] in descriptions)

    @precondition(lambda self: self.program.epolls)
    @rule(data=st.data())
    def wait_a_while(self, data):
        self.program.apply({"op": "wait", "ep": self._draw(data, None, "ep"), "timeout": 1})
