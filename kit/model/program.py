"""A program: a list of operations on eventfds, timerfds, signalfds and epoll instances,
each run on the kernel and on the reference model, and compared.

Programs are JSON data. The stateful test generates them; a report keeps the one that
disagreed; `kit replay` runs it again. Objects are named by kind and number ("e1", "t2",
"s3", "p4") and epoll data is the object's number, so a program means the same thing
whatever fd numbers it gets. Operations name the file they act on with "file" ("efd" in
programs recorded before timerfds and signalfds joined, still accepted).
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from contextlib import contextmanager
from functools import cache

from kit.adapter import epoll as ep
from kit.adapter import eventfd as efd
from kit.adapter import fds, poll, sockets
from kit.adapter import signalfd as sfd
from kit.adapter import timerfd as tfd
from kit.adapter.libc import Result
from kit.adapter.proc import blocked_in_syscall
from kit.adapter.process import run_forked
from kit.adapter.target_calls import fd_kind, target_call
from kit.adapter.watchdog import TargetTimeout, bounded
from kit.engine.interpreter import DEFAULT_BOUND
from kit.engine.records import CONFORMS, DEVIATES, TIMEOUT, Outcome, StepRecord
from kit.model.channels import PipeEnd, SocketEnd, pipe_ends, socket_ends
from kit.model.epoll import ALWAYS, EVENT, EpollModel
from kit.model.eventfd import EventfdModel, Expected
from kit.model.signalfd import NAMES, SIGNALS, Pending, SignalfdModel
from kit.model.timerfd import HOUR_NS, TimerfdModel
from kit.registry import CONSTANTS

C = CONSTANTS
EVENT_BITS = {name: C[name] for name in ("EPOLLIN", "EPOLLOUT", "EPOLLRDHUP", "EPOLLPRI")}
# What poll(2) reports for the events the model's polls ask for (POLLIN | POLLOUT).
POLLED = C["POLLIN"] | C["POLLOUT"] | C["POLLERR"] | C["POLLHUP"]
CTL_OPS = {"add": C["EPOLL_CTL_ADD"], "mod": C["EPOLL_CTL_MOD"], "del": C["EPOLL_CTL_DEL"]}
CLOCKS = ("CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_BOOTTIME")
# How long an "expire now" timer may take to show its expiration: generous, since a
# loaded machine or an emulated one (TCG) can stall; a real stall this long is a finding.
EXPIRY_BOUND_MS = 5000


class ModelDisagreement(Exception):
    def __init__(self, program: list[dict], outcome: Outcome):
        super().__init__(outcome.message)
        self.program, self.outcome = program, outcome


class ModelTimeout(TargetTimeout):
    """A call of the program did not return within its bound: a BaseException, as a
    spec's hang is, so Hypothesis stops at once instead of replaying it."""

    def __init__(self, program: list[dict], outcome: Outcome):
        super().__init__(outcome.message)
        self.program, self.outcome = program, outcome


_call_bound = DEFAULT_BOUND


@contextmanager
def calls_bounded_by(seconds: float):
    """The per-call bound of the programs run in the body (the machine makes its own
    Program, so the checker's bound reaches it this way)."""
    global _call_bound
    previous, _call_bound = _call_bound, seconds
    try:
        yield
    finally:
        _call_bound = previous


class Waiter:
    """A thread blocked in epoll_wait on an instance (the `waiter` operation), judged once
    the program's next operation has run."""

    def __init__(self, program: Program, op: dict, fd: int, room: int, timeout: int):
        self.op, self.line = op, len(program.ops)
        self.room, self.timeout = room, timeout
        self.bound = program.bound + timeout / 1000
        self.call, self.kind = _show(op), _kind(ep.epoll_wait, (fd,))
        self.fd = fd
        self.tid: int | None = None
        self.calling = False
        self.got: Result | None = None
        self.fired = False
        self.waited = 0.0
        self.returned_at = 0.0               # monotonic: when its call returned
        self.before: dict[int, int] = {}     # data -> what the item showed when it blocked
        self.thread = threading.Thread(target=self._run, name=f"model-waiter-{self.line}",
                                       daemon=True)

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        started = time.monotonic()
        with bounded(self.bound) as guard, target_call(self.line, "model", self.call,
                                                       self.bound, self.kind):
            self.calling = True
            self.got = ep.epoll_wait(self.fd, self.room, self.timeout)
            self.returned_at = time.monotonic()
        self.fired, self.waited = guard.fired, self.returned_at - started

    def start_and_block(self, within: float) -> bool:
        """Start the thread; True once it sleeps in its call, False if it returned first.
        Bounded: a thread that neither returns nor sleeps within `within` seconds is
        treated as asleep, and its join (bounded too) then tells."""
        self.thread.start()
        deadline = time.monotonic() + within
        while self.thread.is_alive() and time.monotonic() < deadline:
            if self.calling and self.tid is not None:
                # /proc cannot always tell (None): in the call is then the best there is.
                if blocked_in_syscall(self.tid) is not False:
                    return True
            time.sleep(0.0005)
        return self.thread.is_alive()

    def join(self) -> Result:
        self.thread.join(self.bound + 1)
        if self.thread.is_alive() or self.got is None:
            return Result(ret=-1, errno="EINTR")
        return self.got


def _mask(names: list[str]) -> int:
    return sum(EVENT_BITS[n] for n in names)


class Program:
    """Runs operations one at a time on the kernel and the model."""

    def __init__(self):
        self.bound = _call_bound
        self.fd: dict[str, int] = {}
        self.files: dict[str, EventfdModel | TimerfdModel | SignalfdModel | PipeEnd |
                         SocketEnd] = {}
        # fd name -> name of its open file description (the creating operation's id; a
        # dup shares it, and shares the model object); an epoll instance's is its name
        self.description: dict[str, str] = {}
        # name -> the fd number a closed descriptor had (EPOLL_CTL_DEL through it)
        self.closed: dict[str, int] = {}
        self.epolls: dict[str, EpollModel] = {}
        self.pending = Pending()
        self.saved_mask: set[int] | None = None   # the thread's mask before signals were used
        self.ops: list[dict] = []
        self.records: list[StepRecord] = []
        self.waiter: Waiter | None = None      # blocked, judged after the next operation
        self.stopped = False                   # an operation raised: nothing more to judge

    @property
    def eventfds(self) -> dict[str, EventfdModel]:
        return self.of_kind(EventfdModel)

    def of_kind(self, kind: type) -> dict:
        return {k: m for k, m in self.files.items() if isinstance(m, kind)}

    # -- bookkeeping --------------------------------------------------------------------

    def close_all(self) -> None:
        if self.waiter is not None:
            # Never outlive the program (its descriptors are about to close): bounded by
            # its own timeout, and the watchdog behind it.
            self.waiter.thread.join(self.waiter.bound + 1)
            self.waiter = None
        for name, fd in self.fd.items():
            # Under the watchdog too, but a close that hangs here is not the program's
            # verdict: the parent's stuck-call check ends it.
            with bounded(self.bound), target_call(len(self.ops), "model",
                                                  f"close({name}) at the program's end",
                                                  self.bound):
                fds.close(fd)
        self.fd.clear()
        if self.saved_mask is not None:
            # Take back every signal the program left pending before unblocking: most of
            # them would end the process.
            ours = set(SIGNALS.values())
            while signal.sigtimedwait(ours, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self.saved_mask)
            self.saved_mask = None

    def run(self, program: list[dict]) -> None:
        """Apply every operation, then close everything, whatever happened."""
        try:
            for op in program:
                self.apply(op)
            self.finish()
        finally:
            self.close_all()

    def finish(self) -> None:
        """A waiter blocked by the last operation has no next one to be judged after: it
        is judged now, when it returns (its timeout, as nothing is ready; or news, if
        something became ready meanwhile)."""
        if self.waiter is not None and not self.stopped:
            self._judge_waiter(done=time.monotonic())

    def block_signals(self) -> None:
        if self.saved_mask is None:
            self.saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS.values())

    def readiness(self) -> tuple[dict[str, int], dict[str, int]]:
        """By description name: what each open file and epoll instance shows now, and
        what an instance may show besides (its EPOLLIN hanging on a MAYBE)."""
        ready = {self.description[key]: m.readiness() for key, m in self.files.items()}
        uncertain: dict[str, int] = {}

        def instance(name: str) -> None:
            # Instances watched by this one first (no cycles: EPOLL_CTL_ADD refuses them).
            if name in ready:
                return
            model = self.epolls[name]
            for watched in model.watches():
                if watched in self.epolls:
                    instance(watched)
            must, may = model.wait(ready, uncertain)
            ready[name] = C["EPOLLIN"] if must else 0
            if may and not must:
                uncertain[name] = C["EPOLLIN"]

        for name in self.epolls:
            instance(name)
        return ready, uncertain

    def _target(self, fn, *args, bound: float | None = None, **kw) -> Result:
        """One call on the target for the current operation, under the watchdog and
        marked for the parent (kit.adapter.target_calls), as a spec's calls are."""
        bound = bound or self.bound
        call = _show(self.ops[-1])
        with bounded(bound) as guard, target_call(len(self.ops), "model", call, bound,
                                                  _kind(fn, args)):
            got = fn(*args, **kw)
        if guard.fired and got.errno == "EINTR":
            record = self._record(self.ops[-1], got, {})
            record.status = TIMEOUT
            message = f"operation {len(self.ops)} {call}: did not return within {bound:g}s"
            raise ModelTimeout(list(self.ops), Outcome(TIMEOUT, list(self.records), message))
        return got

    def _record(self, op: dict, got: Result, expected: dict) -> StepRecord:
        record = StepRecord(line=len(self.ops), call=_show(op), result=got.as_dict(),
                            expected=expected, where="model")
        self.records.append(record)
        return record

    def _fail(self, record: StepRecord, problems: list[str]) -> None:
        record.status, record.mismatches = DEVIATES, problems
        message = f"operation {len(self.ops)} {record.call}: {problems[0]}"
        raise ModelDisagreement(list(self.ops), Outcome(DEVIATES, list(self.records), message))

    def _compare(self, op: dict, got: Result, want: Expected, compare_value: bool,
                 seen=None) -> None:
        """`seen` turns the kernel's value into what the model predicts (default: as is)."""
        record = self._record(op, got, {"ret": want.ret, "errno": want.errno,
                                        **({"value": want.value} if compare_value else {})})
        problems = []
        if (got.errno, got.ret if got.errno is None else -1) != (want.errno, want.ret):
            problems.append(f"kernel {_result(got)}, model expects {_expected(want)}")
        elif compare_value:
            value = seen(got.value) if seen else got.value
            if value != want.value:
                problems.append(f"kernel value {value!r}, model expects {want.value!r}")
        if problems:
            self._fail(record, problems)
        return record

    # -- operations -----------------------------------------------------------------------

    def apply(self, op: dict) -> None:
        if "efd" in op:  # the older spelling of "file"
            op = {("file" if k == "efd" else k): v for k, v in op.items()}
        waiter = self.waiter
        if waiter and _disturbs(op, waiter.op["ep"]):
            self._judge_waiter()        # before: this operation would race with it
            waiter = None
        self.ops.append(op)
        try:
            getattr(self, "_" + op["op"])(op)
        except BaseException:
            self.stopped = True
            raise
        if waiter is not None:
            self._judge_waiter(done=time.monotonic())
        if any(model.ahead for model in self.epolls.values()):
            ready, uncertain = self.readiness()
            for model in self.epolls.values():
                if model.ahead:
                    model.still_ready(model.wait(ready, uncertain)[0])

    def _created(self, op: dict, got: Result, model) -> None:
        if got.ok:
            self.fd[op["id"]] = got.ret
            self.description[op["id"]] = op["id"]
            if isinstance(model, EpollModel):
                self.epolls[op["id"]] = model
            else:
                self.files[op["id"]] = model
        self._compare(op, got, Expected(got.ret if got.ok else 0), False)

    def _eventfd(self, op: dict) -> None:
        flags = C["EFD_NONBLOCK"] | (C["EFD_SEMAPHORE"] if op["semaphore"] else 0)
        self._created(op, self._target(efd.eventfd, op["initval"], flags),
                      EventfdModel(op["initval"], op["semaphore"]))

    def _timerfd(self, op: dict) -> None:
        self._created(op, self._target(tfd.timerfd_create, C[op["clock"]], C["TFD_NONBLOCK"]),
                      TimerfdModel(clock=op["clock"]))

    def _signalfd(self, op: dict) -> None:
        self.block_signals()
        self._created(op, self._target(sfd.signalfd, -1, _sigmask(op["mask"]),
                                   flags=C["SFD_NONBLOCK"]),
                      SignalfdModel(frozenset(op["mask"]), self.pending))

    def _epoll(self, op: dict) -> None:
        self._created(op, self._target(ep.epoll_create1, 0), EpollModel())

    def _pipe(self, op: dict) -> None:
        got = self._target(fds.pipe2, C["O_NONBLOCK"])
        self._pair(op, got, pipe_ends(), ("read", "write"))

    def _socketpair(self, op: dict) -> None:
        got = self._target(fds.socketpair, C["AF_UNIX"], C["SOCK_STREAM"] | C["SOCK_NONBLOCK"])
        self._pair(op, got, socket_ends(), ("a", "b"))

    def _pair(self, op: dict, got: Result, ends: tuple, fields: tuple[str, str]) -> None:
        if got.ok:
            for name, end, field in zip((op["id"], op["peer"]), ends, fields):
                self.fd[name] = got.value[field]
                self.files[name] = end
                self.description[name] = name
        self._compare(op, got, Expected(0), False)

    def _channels(self) -> dict:
        """The readiness of every open pipe and socket end (by end)."""
        return {m: m.readiness() for m in self.files.values()
                if isinstance(m, (PipeEnd, SocketEnd))}

    def _channel_news(self, before: dict, wakes: list) -> None:
        """News after an operation on a pipe or socket: certain for what an end newly
        shows (a change: what an edge-triggered item hears of), possible wherever Linux
        wakes an end's waiters though nothing changed (`wakes`: [(end, kinds)])."""
        after = self._channels()
        for end, shown in before.items():
            gained = after.get(end, 0) & ~shown
            if gained:
                self._end_news(end, gained, True)
        for end, kinds in wakes:
            self._end_news(end, kinds, False)

    def _end_news(self, end, kinds: int, certain: bool) -> None:
        for description in {self.description[n] for n, m in self.files.items() if m is end}:
            self._news(description, kinds, certain)

    def _write_bytes(self, op: dict) -> None:
        model, before = self.files[op["file"]], self._channels()
        want = model.write(op["size"])
        got = self._target(sockets.write_bytes, self.fd[op["file"]], op["size"])
        self._channel_news(before, model.wakes_on_write() if want.errno is None else [])
        self._compare(op, got, want, False)

    def _read_bytes(self, op: dict) -> None:
        model, before = self.files[op["file"]], self._channels()
        want = model.read(op["size"])
        got = self._target(sockets.read_bytes, self.fd[op["file"]], op["size"])
        self._channel_news(before, model.wakes_on_read() if want.ret > 0 else [])
        self._compare(op, got, want, False)

    def _shutdown(self, op: dict) -> None:
        model, before = self.files[op["file"]], self._channels()
        want = model.shutdown()
        got = self._target(sockets.shutdown, self.fd[op["file"]], C["SHUT_WR"])
        self._channel_news(before, model.wakes_on_shutdown())
        self._compare(op, got, want, False)

    def _fork(self, op: dict) -> None:
        """fork(2): the child gets a copy of every descriptor, closes its copy of `file` or
        writes a byte into it, and exits; it is reaped here. A copy closed in the child
        leaves the parent's open file description, and its epoll items, as they were
        (epoll(7): a descriptor is duplicated "via dup(2), dup2(2), fcntl(2) F_DUPFD, or
        fork(2)"); a byte written there is written to the same pipe or socket."""
        name, then = op["file"], op["then"]
        model, fd, before = self.files[name], self.fd[name], self._channels()
        want = Expected(0) if then == "close" else model.write(1)

        def child() -> dict:
            done = fds.close(fd) if then == "close" else sockets.write_bytes(fd, 1)
            return {"ret": done.ret, "errno": done.errno}

        status, data = run_forked(child, self.bound)
        if status != "ok":
            record = self._record(op, Result(ret=-1, errno="EINTR"), {})
            record.status = TIMEOUT
            message = f"operation {len(self.ops)} {_show(op)}: the child {status}: {data}"
            raise ModelTimeout(list(self.ops), Outcome(TIMEOUT, list(self.records), message))
        got = Result(ret=data["ret"], errno=data["errno"])
        if then != "close":
            self._channel_news(before, model.wakes_on_write() if want.errno is None else [])
        self._compare(op, got, want, False)

    def _dup(self, op: dict) -> None:
        got = self._target(fds.dup, self.fd[op["obj"]])
        if got.ok:
            self.fd[op["id"]] = got.ret
            self.files[op["id"]] = self.files[op["obj"]]
            self.description[op["id"]] = self.description[op["obj"]]
        self._compare(op, got, Expected(got.ret if got.ok else 0), False)

    def _write(self, op: dict) -> None:
        model = self.files[op["file"]]
        want = model.write(op["value"])
        got = self._target(fds.write_u64, self.fd[op["file"]], op["value"])
        if want.errno is None:
            self._event(op["file"], C["EPOLLIN"])
        self._compare(op, got, want, False)

    def _read(self, op: dict) -> None:
        model = self.files[op["file"]]
        if isinstance(model, SignalfdModel):
            return self._read_signals(op, model)
        want = model.read()
        got = self._target(fds.read_u64, self.fd[op["file"]])
        if want.errno is None and isinstance(model, EventfdModel):
            self._event(op["file"], C["EPOLLOUT"])   # room to write: an eventfd's news
        self._compare(op, got, want, True)

    def _read_signals(self, op: dict, model: SignalfdModel) -> None:
        room = op.get("records", 1)
        got = self._target(sfd.read_siginfo, self.fd[op["file"]], room)
        empty = model.read_expected_empty()
        if empty or not got.ok:
            return self._compare(op, got, empty or Expected(room * 128), False)
        records = [{"name": NAMES.get(r["signo"], str(r["signo"])), "int": r["int"]}
                   for r in got.value.values()]
        record = self._record(op, got, {"records": "pending signals of the mask, standard "
                                                   "first, then real-time in order"})
        problems = model.pending.check_read(model.mask, room, records)
        if not problems and got.ret != len(records) * 128:
            problems = [f"read returned {got.ret} bytes for {len(records)} record(s)"]
        # Every signal came from this process by rt_tgsigqueueinfo with SI_QUEUE: the
        # record's "PID of sender", "Real UID of sender" and "Signal code" say so.
        sender = {"code": C["SI_QUEUE"], "pid": os.getpid(), "uid": os.getuid()}
        for i, r in sorted(got.value.items()):
            wrong = [f"ssi_{k} {r[k]} where the model expects {v}"
                     for k, v in sender.items() if r[k] != v]
            if wrong and not problems:
                problems = [f"record {i} ({records[i]['name']}): {', '.join(wrong)} (sent by "
                            f"this process with sigqueue's SI_QUEUE)"]
        if problems:
            self._fail(record, problems)

    def _signal(self, op: dict) -> None:
        self.block_signals()
        changed = self.pending.send(op["sig"], op["value"])
        got = self._target(sfd.sigqueue_thread, SIGNALS[op["sig"]], op["value"])
        if changed:
            # News for a signalfd whose mask holds the signal; whether the others hear of
            # it is not documented (Linux wakes every signalfd of the process).
            for key, model in self.of_kind(SignalfdModel).items():
                self._event(key, C["EPOLLIN"], certain=op["sig"] in model.mask)
        self._compare(op, got, Expected(0), False)

    def _setmask(self, op: dict) -> None:
        model = self.files[op["file"]]
        fd = self.fd[op["file"]]
        got = self._target(sfd.signalfd, fd, _sigmask(op["mask"]), flags=C["SFD_NONBLOCK"])
        model.mask = frozenset(op["mask"])
        # Not documented as an event, nor as none (Linux wakes every signalfd).
        for key in self.of_kind(SignalfdModel):
            self._event(key, C["EPOLLIN"], certain=False)
        self._compare(op, got, Expected(fd), False)   # "or fd if fd was a valid ... signalfd"

    def _settime(self, op: dict) -> None:
        model, fd = self.files[op["file"]], self.fd[op["file"]]
        when, periodic, absolute = op["when"], op.get("periodic", False), op.get("abstime",
                                                                                  False)
        value_ns = {"now": 1, "later": HOUR_NS, "never": 0}[when]
        got = self._target(tfd.timerfd_settime, fd, C["TFD_TIMER_ABSTIME"] if absolute and value_ns else 0,
                                  value_ns=value_ns, interval_ns=HOUR_NS if periodic else 0,
                                  from_now=absolute and bool(value_ns),
                                  clockid=C[model.clock])
        want = model.settime(when, periodic)
        if got.ok and when == "now":
            # Let the expiration happen before anything else looks at the timer.
            shown = self._target(poll.poll, fd, C["POLLIN"], EXPIRY_BOUND_MS,
                                 bound=self.bound + EXPIRY_BOUND_MS / 1000)
            if shown.value != C["POLLIN"]:
                record = self._record(op, shown, {"revents": C["POLLIN"]})
                self._fail(record, [(f"a timer set to expire after 1 ns showed no expiration "
                                     f"within {EXPIRY_BOUND_MS} ms (poll: {_result(shown)}, "
                                     f"revents {shown.value!r})")])
            self._event(op["file"], C["EPOLLIN"])
        self._compare(op, got, want, False)

    def _gettime(self, op: dict) -> None:
        want = self.files[op["file"]].gettime()
        got = self._target(tfd.timerfd_gettime, self.fd[op["file"]])
        self._compare(op, got, want, True, seen=lambda v: {
            "armed": v["value_ns"] > 0, "interval_ns": v["interval_ns"],
            "value_at_most_an_hour": v["value_ns"] <= HOUR_NS})

    def _event(self, name: str, kind: int, certain: bool = True) -> None:
        self._news(self.description[name], kind, certain)

    def _news(self, description: str, kind: int, certain: bool) -> None:
        for name, model in list(self.epolls.items()):
            heard = model.event(description, kind, certain)
            if heard:
                # An item that hears news queues it on the instance, which wakes whoever
                # watches the instance: news for it (epoll(7): "events waiting").
                self._news(name, C["EPOLLIN"], heard == EVENT)

    def _poll(self, op: dict) -> None:
        name = op["file"]
        got = self._target(poll.poll, self.fd[name], C["POLLIN"] | C["POLLOUT"], 0)
        if name in self.files:
            want = self.files[name].readiness() & POLLED
        else:
            ready, uncertain = self.readiness()
            want = ready[name]
            if name in uncertain and got.ok and got.value in (0, uncertain[name]):
                want = got.value      # an instance whose readiness hangs on a MAYBE
        self._compare(op, got, Expected(1 if want else 0, value=want), True)

    def _ctl(self, op: dict) -> None:
        key, model = op["file"], self.epolls[op["ep"]]
        if key not in self.fd:
            return self._del_closed(op)
        events = _mask(op.get("events", []))
        edge, oneshot = op.get("et", False), op.get("oneshot", False)
        flags = (C["EPOLLET"] if edge else 0) | (C["EPOLLONESHOT"] if oneshot else 0)
        data = int(key[1:])
        ready, uncertain = self.readiness()
        description = self.description[key]
        ready_now = ready[description] & (events | ALWAYS)
        maybe_now = uncertain.get(description, 0) & (events | ALWAYS)
        item = (self.fd[key], description)
        if key == op["ep"]:
            want = (-1, "EINVAL")      # epoll_ctl(2): "fd is the same as epfd"
        elif op["op"] == "add" and key in self.epolls and self._reaches(key, op["ep"]):
            want = (-1, "ELOOP")       # "... would result in a circular loop of epoll instances"
        elif op["op"] == "add":
            want = model.add(item, events, data, edge, oneshot, ready_now, maybe_now)
        elif op["op"] == "mod":
            want = model.mod(item, events, data, edge, oneshot, ready_now, maybe_now)
        else:
            want = model.delete(item)
        got = self._target(ep.epoll_ctl, self.fd[op["ep"]], CTL_OPS[op["op"]], self.fd[key], events | flags,
                           data)
        if want[0] == 0 and op["op"] != "del" and (ready_now or maybe_now):
            # An item that is ready when added (or modified) is queued on the instance;
            # whether that wakes those watching the instance is not documented.
            self._news(op["ep"], C["EPOLLIN"], certain=False)
        self._compare(op, got, Expected(*want), False)

    def _reaches(self, start: str, goal: str) -> bool:
        """Whether epoll instance `goal` is `start` or watched from it, through instances."""
        if start == goal:
            return True
        return any(self._reaches(watched, goal) for watched in self.epolls[start].watches()
                   if watched in self.epolls)

    def _del_closed(self, op: dict) -> None:
        """EPOLL_CTL_DEL through the number a closed descriptor had: EBADF while no
        descriptor has that number again, else it acts on whatever file now has it
        (epoll(7): the key is "the file descriptor number and the open file description")."""
        number, model = self.closed[op["file"]], self.epolls[op["ep"]]
        owner = next((name for name, fd in self.fd.items() if fd == number), None)
        if owner is None:
            want = (-1, "EBADF")
        elif owner == op["ep"]:
            want = (-1, "EINVAL")
        else:
            want = model.delete((number, self.description[owner]))
        got = self._target(ep.epoll_ctl, self.fd[op["ep"]], CTL_OPS["del"], number, 0, 0)
        self._compare(op, got, Expected(*want), False)

    _add = _mod = _del = _ctl

    def _wait(self, op: dict) -> None:
        name, model = op["ep"], self.epolls[op["ep"]]
        room, timeout = op.get("maxevents", 64), op.get("timeout", 0)
        must, may = model.wait(*self.readiness())
        started = time.monotonic()
        got = self._target(ep.epoll_wait, self.fd[name], room, timeout,
                           bound=self.bound + timeout / 1000)
        self._judge_wait(op, got, time.monotonic() - started, must, may)

    def _waiter(self, op: dict) -> None:
        """epoll_wait in a thread of its own. Something ready now: it returns at once and
        is judged as a wait. Else it must block ("A call to epoll_wait() will block until
        either: a file descriptor delivers an event; ... or the timeout expires") and is
        judged after the next operation, which may wake it."""
        name, model = op["ep"], self.epolls[op["ep"]]
        room, timeout = op.get("maxevents", 64), op["timeout"]
        ready, uncertain = self.readiness()
        must, may = model.wait(ready, uncertain)
        waiter = Waiter(self, op, self.fd[name], room, timeout)
        waiter.before = {item.data: ready[key[1]] & (item.events | ALWAYS)
                         for key, item in model.interest.items()}
        if waiter.start_and_block(self.bound) and not must:
            self.waiter = waiter
            return
        got = self._joined(waiter)
        self._judge_wait(op, got, waiter.waited, must, may)

    def _joined(self, waiter: Waiter) -> Result:
        got = waiter.join()
        if waiter.fired or waiter.thread.is_alive():
            record = StepRecord(line=waiter.line, call=waiter.call, result=got.as_dict(),
                                expected={}, where="model")
            record.status = TIMEOUT
            self.records.append(record)
            message = (f"operation {waiter.line} {waiter.call}: did not return within "
                       f"{waiter.bound:g}s")
            raise ModelTimeout(list(self.ops), Outcome(TIMEOUT, list(self.records), message))
        return got

    def _judge_waiter(self, done: float = 0.0) -> None:
        """The blocked waiter after the operation that followed it (which ended at
        monotonic time `done`). It woke on the first news, perhaps before the operation
        made everything it makes ready: it must have woken if something is ready now, and
        reports only what was or is ready. A waiter whose timeout ran out before the
        operation ended (a loaded machine can hold the program back that long) may have
        missed it: "not woken" is only a waiter still blocked when the operation ended."""
        waiter, self.waiter = self.waiter, None
        got = self._joined(waiter)
        name = waiter.op["ep"]
        model = self.epolls.get(name)
        reported = dict(got.value) if got.ok and got.value else {}
        record = StepRecord(line=waiter.line, call=waiter.call + " (blocked; after the next "
                            "operation)", result=got.as_dict(), where="model",
                            expected={"woken": "if an item is ready now",
                                      "reports": "items ready before or after"})
        self.records.append(record)
        if model is None:            # the instance was closed meanwhile: nothing to judge
            return
        ready, uncertain = self.readiness()
        must, may = model.wait(ready, uncertain)
        problems = []
        if not got.ok:
            problems.append(f"kernel {_result(got)}, model expects a return")
        elif must and not reported and waiter.returned_at > done:
            problems.append(f"returned 0 although {sorted(must)} became ready: the blocked "
                            f"waiter was not woken")
        elif len(reported) > waiter.room:
            problems.append(f"{len(reported)} events, more than maxevents {waiter.room}")
        for data, revents in sorted(reported.items()):
            shown = must.get(data, 0) | may.get(data, 0) | waiter.before.get(data, 0)
            if data not in must and data not in may:
                problems.append(f"reported {data}, which the model does not have ready")
            elif revents & ~shown or not revents:
                problems.append(f"reported {data} with events {revents:#x}, where it showed "
                                f"{shown:#x}")
        if not reported and not must and not may and got.ok and \
                waiter.waited < (waiter.timeout - 1) / 1000:
            problems.append(f"returned after {waiter.waited * 1000:.1f} ms, before its timeout "
                            f"of {waiter.timeout} ms, with nothing ready")
        if problems:
            record.status, record.mismatches = DEVIATES, problems
            message = f"operation {waiter.line} {waiter.call}: {problems[0]}"
            raise ModelDisagreement(list(self.ops), Outcome(DEVIATES, list(self.records),
                                                            message))
        # What it reported is delivered; the rest stays queued (it may have arrived after
        # the waiter looked), so no round robin is owed to it either.
        model.settle(set(reported), must, may, full=True)
        model.ahead = set()

    def _judge_wait(self, op: dict, got: Result, waited: float, must: dict, may: dict) -> None:
        name, model = op["ep"], self.epolls[op["ep"]]
        room, timeout = op.get("maxevents", 64), op.get("timeout", 0)
        reported = dict(got.value) if got.ok and got.value else {}
        # Of the items the model leaves open, take those the kernel reported as they were.
        allowed = {**must, **{d: r for d, r in may.items() if reported.get(d) == r}}
        if len(allowed) > room:
            # "Up to maxevents are returned": which ones is the kernel's choice, and each
            # must be allowed; the model fills the rest of the room from what is ready.
            chosen = {d: r for d, r in reported.items() if allowed.get(d) == r}
            for d, r in allowed.items():
                if len(chosen) < room:
                    chosen.setdefault(d, r)
            allowed = chosen
        order = model.round_robin_problem(must, reported)
        model.settle(set(reported), must, may, full=got.ok and got.ret == room)
        record = self._compare(op, got, Expected(len(allowed), value=allowed), True)
        if order:
            self._fail(record, [order])
        if not allowed and not may and timeout > 0 and waited < (timeout - 1) / 1000:
            # Nothing was ready and nothing could happen meanwhile: it must have waited.
            self._fail(record, [f"returned after {waited * 1000:.1f} ms, before its timeout of "
                                f"{timeout} ms, with nothing ready"])
        ready, uncertain = self.readiness()
        if ready[name] or name in uncertain:
            # Items left on the ready list (level-triggered ones are queued again): whether
            # that wakes those watching the instance is not documented.
            self._news(name, C["EPOLLIN"], certain=False)

    def _close(self, op: dict) -> None:
        key = op["obj"]
        before = self._channels()
        self.closed[key] = self.fd.pop(key)
        got = self._target(fds.close, self.closed[key])
        model = self.files.pop(key, None) or self.epolls.pop(key)
        description = self.description.pop(key)
        if description not in self.description.values():
            for epoll in self.epolls.values():
                epoll.forget(description)
            if isinstance(model, (PipeEnd, SocketEnd)):
                # The end's open file description is gone: its peer hears of it.
                self._channel_news(before, model.release())
        self._compare(op, got, Expected(0), False)


@cache
def _takes_fd_first(fn) -> bool:
    first = next(iter(inspect.signature(fn).parameters), "")
    return first in ("fd", "epfd")


def _kind(fn, args: tuple) -> str:
    """As a spec step's kind ('read_u64 on anon_inode:[eventfd]'): a kind of call that
    hung in a spec is known to hang here too, and the other way round."""
    if args and _takes_fd_first(fn):
        return f"{fn.__name__} on {fd_kind(args[0])}"
    return fn.__name__


def _disturbs(op: dict, ep_name: str) -> bool:
    """Whether an operation would race with a waiter blocked on `ep_name` (it is judged
    before such an operation instead of after it)."""
    return op["op"] == "waiter" or (op["op"] in ("wait", "close") and
                                    ep_name in (op.get("ep"), op.get("obj")))


def _sigmask(names: list[str]) -> str:
    return ",".join(str(SIGNALS[n]) for n in names)


def _show(op: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in op.items() if k != "op")
    return f"{op['op']}({args})"


def _result(got: Result) -> str:
    return f"failed with {got.errno}" if got.errno else f"returned {got.ret}"


def _expected(want: Expected) -> str:
    return f"failure with {want.errno}" if want.errno else f"a return of {want.ret}"


def run_program(program: list[dict]) -> Outcome:
    """Replay a recorded program; the outcome carries the full trace."""
    runner = Program()
    try:
        runner.run(program)
    except (ModelDisagreement, ModelTimeout) as exc:
        return exc.outcome
    return Outcome(CONFORMS, runner.records)
