"""Groups of waiters: N threads or processes, each blocked in one call, and who of them woke.

A `waiters` step starts the group and returns once every member sleeps in a blocking call
(or has already finished), so the trigger that follows cannot come early, however loaded
the machine; with `until_blocked: false` it returns at once, so that the trigger races
with the members going to sleep (a lost-wake-up loop wants exactly that race). A `woken` step then watches the group for its window and judges who woke:
a member is woken when it has finished its steps; one that is still asleep inside its call
at the end of the window is still blocked. One the kernel has woken but the scheduler has
not yet run is neither: it is given the step bound to show which it is, so load makes a
wake-up late, never lost.

Members still blocked at the end of the run (or of a `repeat` iteration) are released:
threads by the watchdog's signal (their call returns EINTR), processes by SIGKILL. What a
released member's steps gave is not judged: it was meant to stay blocked.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kit.adapter.proc import blocked_in_syscall
from kit.adapter.process import run_forked
from kit.adapter.target_calls import after_bound, note_overrun
from kit.adapter.watchdog import WATCHDOG_SIGNAL
from kit.engine.records import (
    ERROR,
    STUCK_GRACE,
    TIMEOUT,
    WAIT_RAN_OUT,
    StepFailure,
    StepRecord,
    failure_of,
)
from kit.spec import expressions as ex
from kit.spec.schema import WAITER_INDEX as INDEX

if TYPE_CHECKING:  # the interpreter drives groups; imports flow one way at run time
    from kit.engine.interpreter import Run

MAX_WAITERS = 64          # a group is a handful of threads, not a fork bomb
POLL = 0.001              # seconds between looks at /proc
RELEASE_EVERY = 0.05      # a release signal that lands before the call starts is re-sent


class Released(Exception):
    """A member's call returned because the kit released it: not the target's answer."""


@dataclass
class Member:
    index: int
    env: dict
    records: list = field(default_factory=list)
    failure: Any = None            # a StepFailure, or None
    finished_at: float | None = None
    released: bool = False
    reported: bool = False         # counted by a `woken` step already
    tid: int | None = None         # thread members: the native id, once running
    pid: int | None = None         # process members: the child's pid, once forked
    board: Any = None              # process members: the child's CallBoard
    handle: threading.Thread | None = None
    base: frozenset = frozenset()  # names bound before the member's steps ran

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class Group:
    def __init__(self, run: Run, name: str, kind: str, steps: list, line: int):
        self.run, self.name, self.kind, self.steps, self.line = run, name, kind, steps, line
        self.members: list[Member] = []

    # -- start ------------------------------------------------------------------------

    def start(self, count: int, env: dict, until_blocked: bool = True) -> None:
        for index in range(count):
            member = Member(index, {**env, INDEX: index}, base=frozenset(env) | {INDEX})
            body = self._thread_body if self.kind == "thread" else self._process_body
            member.handle = threading.Thread(target=body, args=(member,), daemon=True,
                                             name=f"kit-waiter-{self.name}-{index}")
            try:
                member.handle.start()
            except RuntimeError as exc:
                raise StepFailure(ERROR, f"line {self.line}: could not start waiter "
                                         f"{self.name}[{index}]: {exc}") from None
            self.members.append(member)
        if until_blocked:   # else the trigger races with their going to sleep, on purpose
            self._until_all_blocked()

    def where(self, member: Member) -> str:
        return f"{self.name}[{member.index}]"

    def _thread_body(self, member: Member) -> None:
        member.tid = threading.get_native_id()
        if member.released:         # released before it ran: not one of its calls counts
            member.finished_at = time.monotonic()
            return
        try:
            self.run.execute(self.steps, member.env, member.records, where=self.where(member))
        except Released:
            pass
        except Exception as exc:  # noqa: BLE001 - reported against the behaviour
            member.failure = failure_of(exc)
        finally:
            member.finished_at = time.monotonic()

    def _process_body(self, member: Member) -> None:
        where = self.where(member)

        def work():
            # the group's own kind of run (the interpreter's Run), made without importing it
            child = type(self.run)(self.run.behaviour, self.run.target, {}, self.run.bound)
            child.owned = set(self.run.owned)
            records: list = []
            failure = None
            try:
                child.execute(self.steps, member.env, records, where=where)
            except StepFailure as exc:
                failure = [exc.status, exc.message]
            bound = {k: v for k, v in member.env.items() if _plain(v)}
            return {"records": [r.as_dict() for r in records], "failure": failure,
                    "env": bound}

        try:
            status, data = run_forked(work, self.run.bound * 2,
                                      on_start=lambda pid: setattr(member, "pid", pid),
                                      stuck_after=after_bound(STUCK_GRACE),
                                      on_board=lambda board: setattr(member, "board", board))
            if member.released:
                return
            if status == "ok":
                member.records = [StepRecord(**r) for r in data["records"]]
                member.env.update(data["env"])
                if data["failure"]:
                    member.failure = StepFailure(*data["failure"])
            else:
                member.failure = StepFailure(TIMEOUT if status == "timeout" else ERROR,
                                             f"waiter {where}: child process: {data}")
        finally:
            member.finished_at = time.monotonic()

    def asleep(self, member: Member) -> bool:
        """Whether the member sleeps inside a blocking call right now."""
        if member.done:
            return False
        if self.kind == "thread":
            return self.run.asleep_in_call(member.tid)
        if member.pid is None or member.board is None:
            return False
        # Inside a blocking operation (the child's call board says which), and its one
        # thread asleep in a system call other than futex (None: /proc will not tell, as
        # for a non-dumpable child of an unprivileged run: the board alone must do).
        if not in_blocking_call(member.board):
            return False
        state = blocked_in_syscall(member.pid, member.pid)
        return state is None or state

    def _until_all_blocked(self) -> None:
        deadline = time.monotonic() + self.run.bound
        for member in self.members:
            while not member.done and not self.asleep(member):
                if time.monotonic() >= deadline:
                    note_overrun([WAIT_RAN_OUT])
                    return
                time.sleep(POLL)

    # -- who woke ---------------------------------------------------------------------

    def watch(self, window: float, enough) -> tuple[list[Member], list[Member], list[Member]]:
        """Watch the members not yet reported for `window` seconds (less once `enough`
        of the newly woken says the outcome is settled); then give those neither finished
        nor asleep in their call up to the step bound to become one or the other.
        Returns (woken in the order they finished, still blocked, still neither: a load
        that starved them, which must not pass for a wake-up that never came)."""
        pending = [m for m in self.members if not m.reported]
        end = time.monotonic() + window
        while time.monotonic() < end:
            if enough(sum(m.done for m in pending), len(pending)):
                break
            time.sleep(POLL)
        settle = time.monotonic() + self.run.bound
        unsettled: list[Member] = []
        while unsettled := [m for m in pending if not m.done and not self.asleep(m)]:
            if time.monotonic() >= settle:
                break
            time.sleep(POLL)
        woken = sorted((m for m in pending if m.done), key=lambda m: m.finished_at)
        blocked = [m for m in pending if not m.done and m not in unsettled]
        for m in woken:
            m.reported = True
        return woken, blocked, unsettled

    # -- the end ----------------------------------------------------------------------

    def release(self) -> list[str]:
        """Release every member still running, bounded; the names of any that would not go."""
        left = [m for m in self.members if not m.done]
        for member in left:
            member.released = True
            if member.tid is not None:
                self.run.released.add(member.tid)
        deadline = time.monotonic() + self.run.bound * 2
        for member in left:
            while member.handle.is_alive() and time.monotonic() < deadline:
                self._interrupt(member)
                member.handle.join(RELEASE_EVERY)
        return [self.where(m) for m in self.members if m.handle.is_alive()]

    def _interrupt(self, member: Member) -> None:
        try:
            if self.kind == "thread" and member.handle.ident is not None:
                signal.pthread_kill(member.handle.ident, WATCHDOG_SIGNAL)
            elif self.kind == "process" and member.pid is not None:
                import os
                os.kill(member.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass


def in_blocking_call(board) -> bool:
    """Whether a forked child's call board shows it inside a blocking operation."""
    try:
        calls = board.in_calls()
    except ValueError:       # the board is closed: the child has been reaped
        return False
    return any(_blocking(c.kind) for c in calls)


def _blocking(kind: str) -> bool:
    """Whether a call board's kind ("epoll_wait on anon_inode:[eventpoll]") is a blocking
    operation's."""
    from kit.registry import OPERATIONS

    op = OPERATIONS.get(kind.split(" on ", 1)[0])
    return op is not None and op.blocking


def _plain(value: Any) -> bool:
    """Values a forked waiter can send back (JSON): what its steps bound."""
    return isinstance(value, (int, float, str, bool, type(None), list, dict))


# -- judging a `woken` step ---------------------------------------------------------------

def _names(members: list[Member]) -> str:
    if not members:
        return "none"
    return ("waiter " if len(members) == 1 else "waiters ") + \
        ", ".join(str(m.index) for m in members)


def enough_for(expect: dict, env: dict):
    """When a window may end early: once the outcome can no longer change."""
    if expect.get("all"):
        return lambda done, total: done == total
    if "at_least" in expect and len(expect) == 1:
        want = ex.evaluate(expect["at_least"], env)
        return lambda done, total: done >= want
    return lambda done, total: False     # exactly, none, which, order: the whole window


def judge(expect: dict, env: dict, woken: list[Member], blocked: list[Member],
          window: float) -> list[str]:
    """Sentences saying how who woke differs from what the spec expects (empty: as said)."""
    count, total = len(woken), len(woken) + len(blocked)
    seen = (f"{count} of {total} woke within {window:g} s: {_names(woken)}; still blocked: "
            f"{_names(blocked)}")
    out = []
    for kind, raw in expect.items():
        # a list is indices here, not an OR of flags
        want = [ex.evaluate(i, env) for i in raw] if isinstance(raw, list) else \
            ex.evaluate(raw, env)
        if kind == "exactly" and count != want:
            out.append(f"expected exactly {want} woken, but {seen}")
        elif kind == "at_least" and count < want:
            out.append(f"expected at least {want} woken, but {seen}")
        elif kind == "at_most" and count > want:
            out.append(f"expected at most {want} woken, but {seen}")
        elif kind == "none" and want and count:
            out.append(f"expected no waiter woken, but {seen}")
        elif kind == "all" and want and blocked:
            out.append(f"expected all {total} woken, but {_names(blocked)} still blocked "
                       f"after {window:g} s ({count} of {total} woke)")
        elif kind == "which" and sorted(want) != sorted(m.index for m in woken):
            out.append(f"expected {_names([Member(i, {}) for i in sorted(want)])} woken, "
                       f"but {seen}")
        elif kind == "order" and list(want) != [m.index for m in woken]:
            out.append(f"expected waiters to finish in the order {list(want)}, but {seen} "
                       f"(in that order)")
    return out


def summary(woken: list[Member], blocked: list[Member]) -> dict:
    """The `woken` step's value: counts, indices, and what each woken waiter bound."""
    return {"count": len(woken), "woken": sorted(m.index for m in woken),
            "order": [m.index for m in woken], "blocked": [m.index for m in blocked],
            "results": {m.index: {k: v for k, v in m.env.items() if k not in m.base}
                        for m in woken}}
