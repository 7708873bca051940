"""A program: a list of operations on eventfds and epoll instances, each run on the
kernel and on the reference model, and compared.

Programs are JSON data. The stateful test generates them; a report keeps the one that
disagreed; `kit replay` runs it again. Objects are named ("e1", "p1") and epoll data is
the object's number, so a program means the same thing whatever fd numbers it gets.
"""

from __future__ import annotations

from kit.adapter import epoll as ep
from kit.adapter import eventfd as efd
from kit.adapter import fds, poll
from kit.adapter.libc import Result
from kit.engine.interpreter import CONFORMS, DEVIATES, Outcome, StepRecord
from kit.model.epoll import ALWAYS, EpollModel
from kit.model.eventfd import EventfdModel, Expected
from kit.registry import CONSTANTS

C = CONSTANTS
EVENT_BITS = {"EPOLLIN": C["EPOLLIN"], "EPOLLOUT": C["EPOLLOUT"]}
CTL_OPS = {"add": C["EPOLL_CTL_ADD"], "mod": C["EPOLL_CTL_MOD"], "del": C["EPOLL_CTL_DEL"]}


class ModelDisagreement(Exception):
    def __init__(self, program: list[dict], outcome: Outcome):
        super().__init__(outcome.message)
        self.program, self.outcome = program, outcome


def _mask(names: list[str]) -> int:
    return sum(EVENT_BITS[n] for n in names)


class Program:
    """Runs operations one at a time on the kernel and the model."""

    def __init__(self):
        self.fd: dict[str, int] = {}
        self.eventfds: dict[str, EventfdModel] = {}
        self.epolls: dict[str, EpollModel] = {}
        self.ops: list[dict] = []
        self.records: list[StepRecord] = []

    # -- bookkeeping --------------------------------------------------------------------

    def close_all(self) -> None:
        for fd in self.fd.values():
            fds.close(fd)
        self.fd.clear()

    def readiness(self) -> dict[str, int]:
        return {key: m.readiness() for key, m in self.eventfds.items()}

    def _compare(self, op: dict, got: Result, want: Expected, compare_value: bool) -> None:
        record = StepRecord(line=len(self.ops), call=_show(op), result=got.as_dict(),
                            expected={"ret": want.ret, "errno": want.errno,
                                      **({"value": want.value} if compare_value else {})},
                            where="model")
        self.records.append(record)
        problems = []
        if (got.errno, got.ret if got.errno is None else -1) != (want.errno, want.ret):
            problems.append(f"kernel {_result(got)}, model expects {_expected(want)}")
        elif compare_value and got.value != want.value:
            problems.append(f"kernel value {got.value!r}, model expects {want.value!r}")
        if problems:
            record.status, record.mismatches = DEVIATES, problems
            message = f"operation {len(self.ops)} {record.call}: {problems[0]}"
            raise ModelDisagreement(list(self.ops), Outcome(DEVIATES, list(self.records),
                                                            message))

    # -- operations -----------------------------------------------------------------------

    def apply(self, op: dict) -> None:
        self.ops.append(op)
        getattr(self, "_" + op["op"])(op)

    def _eventfd(self, op: dict) -> None:
        flags = C["EFD_NONBLOCK"] | (C["EFD_SEMAPHORE"] if op["semaphore"] else 0)
        got = efd.eventfd(op["initval"], flags)
        if got.ok:
            self.fd[op["id"]] = got.ret
            self.eventfds[op["id"]] = EventfdModel(op["initval"], op["semaphore"])
        self._compare(op, got, Expected(got.ret if got.ok else 0), False)

    def _epoll(self, op: dict) -> None:
        got = ep.epoll_create1(0)
        if got.ok:
            self.fd[op["id"]] = got.ret
            self.epolls[op["id"]] = EpollModel()
        self._compare(op, got, Expected(got.ret if got.ok else 0), False)

    def _write(self, op: dict) -> None:
        model = self.eventfds[op["efd"]]
        want = model.write(op["value"])
        got = fds.write_u64(self.fd[op["efd"]], op["value"])
        if want.errno is None:
            self._event(op["efd"], ep_in=True)
        self._compare(op, got, want, False)

    def _read(self, op: dict) -> None:
        model = self.eventfds[op["efd"]]
        want = model.read()
        got = fds.read_u64(self.fd[op["efd"]])
        if want.errno is None:
            self._event(op["efd"], ep_in=False)
        self._compare(op, got, want, True)

    def _event(self, key: str, ep_in: bool) -> None:
        for model in self.epolls.values():
            model.event(key, C["EPOLLIN"] if ep_in else C["EPOLLOUT"])

    def _poll(self, op: dict) -> None:
        want = self.eventfds[op["efd"]].readiness()
        got = poll.poll(self.fd[op["efd"]], C["POLLIN"] | C["POLLOUT"], 0)
        self._compare(op, got, Expected(1 if want else 0, value=want), True)

    def _ctl(self, op: dict) -> None:
        key, model = op["efd"], self.epolls[op["ep"]]
        events = _mask(op.get("events", []))
        edge, oneshot = op.get("et", False), op.get("oneshot", False)
        flags = (C["EPOLLET"] if edge else 0) | (C["EPOLLONESHOT"] if oneshot else 0)
        data = int(key[1:])
        ready_now = self.eventfds[key].readiness() & (events | ALWAYS)
        if op["op"] == "add":
            want = model.add(key, events, data, edge, oneshot, ready_now)
        elif op["op"] == "mod":
            want = model.mod(key, events, data, edge, oneshot, ready_now)
        else:
            want = model.delete(key)
        got = ep.epoll_ctl(self.fd[op["ep"]], CTL_OPS[op["op"]], self.fd[key], events | flags,
                           data)
        self._compare(op, got, Expected(*want), False)

    _add = _mod = _del = _ctl

    def _wait(self, op: dict) -> None:
        model = self.epolls[op["ep"]]
        want = model.wait(self.readiness(), 64)
        got = ep.epoll_wait(self.fd[op["ep"]], 64, 0)
        self._compare(op, got, Expected(len(want), value=want), True)

    def _close(self, op: dict) -> None:
        key = op["obj"]
        got = fds.close(self.fd.pop(key))
        if key in self.eventfds:
            del self.eventfds[key]
            for model in self.epolls.values():
                model.forget(key)
        else:
            del self.epolls[key]
        self._compare(op, got, Expected(0), False)


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
        for op in program:
            runner.apply(op)
    except ModelDisagreement as exc:
        return exc.outcome
    finally:
        runner.close_all()
    return Outcome(CONFORMS, runner.records)
