"""Steps on the adapter: one example of one behaviour, from arguments to verdict.

A run owns every descriptor its steps create and closes what the spec left open;
every call that may block runs under the watchdog; threads and children are joined
or killed within a bound. The trace records each call with expected and actual, so
a deviation explains itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kit import confinement
from kit.adapter import libc, pidfd, scratch
from kit.adapter.proc import blocked_in_syscall, run_queue_wait
from kit.adapter.process import run_forked
from kit.adapter.target_calls import (
    CallBoard,
    after_bound,
    fd_kind,
    note_overrun,
    overran,
    target_call,
)
from kit.adapter.watchdog import TargetTimeout, bounded
from kit.engine import expectations, gates, profiles, repeat, waiters
from kit.engine.expectations import ASLEEP_FALLBACK
from kit.engine.records import (  # noqa: F401 - the run's records, re-exported for callers
    CONFORMS,
    DEVIATES,
    ERROR,
    LATE,
    STUCK_GRACE,
    TIMEOUT,
    UNGUARDED_EXTRA,
    WAIT_RAN_OUT,
    Outcome,
    StepFailure,
    StepRecord,
    failure_of,
)
from kit.engine.target import Target
from kit.registry import OPERATIONS
from kit.spec import expressions as ex
from kit.spec.model import Behaviour, Step
from kit.spec.patterns import PatternTimeout
from kit.spec.schema import QUIET

DEFAULT_BOUND = 5.0


def _show_arg(raw: Any, value: Any) -> str:
    """Flags keep their names (EFD_NONBLOCK|EFD_SEMAPHORE); big numbers show in hex."""
    if isinstance(raw, (list, str)) and not str(raw).startswith("$") and raw != value:
        return ex.describe(raw)
    if hasattr(value, "names"):
        return repr(value)
    return ex.describe(value)


def _bounds_duration(step: Step) -> bool:
    """Whether this step's expectation (or a kernel variant's) has `returns_within`."""
    return any("returns_within" in (expect or {})
               for expect in [step.expect] + [v.expect for v in step.differs])


def _kind(op, args: dict) -> str:
    """The kind of a blocking call: its operation and what its descriptor is
    ('read_u64 on anon_inode:[eventfd]'), so hangs of one kind are told from others."""
    fd = next((args[name] for name, kind in op.args.items() if kind == "fd"), None)
    return op.name if fd is None else f"{op.name} on {fd_kind(fd)}"


def _refuse(record: StepRecord, reason: str) -> None:
    """A step that reached beyond the behaviour's own objects: the spec's fault, an error."""
    record.status, record.mismatches = ERROR, [f"refused: {reason}"]
    raise StepFailure(ERROR, f"line {record.line}: {record.call}: refused: {reason}")


def _confined(fn, args: dict, record: StepRecord) -> libc.Result:
    try:
        return fn(**args)
    except confinement.Refused as exc:
        _refuse(record, str(exc))
        raise  # unreachable: _refuse raises
    except TargetTimeout as exc:
        # An operation that bounds itself (an exec, the race executor) ran out: a timeout
        # of this step, like a watchdog's, not a crash of the check.
        record.status = TIMEOUT
        raise StepFailure(TIMEOUT, f"line {record.line}: {record.call}: {exc}") from None


class _Thread:
    def __init__(self, run: "Run", step: Step, env: dict):
        self.run, self.step, self.env = run, step, dict(env)
        self.spawner = threading.get_native_id()
        self.tid: int | None = None       # its own native id, once it runs (for wait_blocked)
        self.records: list[StepRecord] = []
        self.failure: StepFailure | None = None
        self.thread = threading.Thread(target=self._main, name=f"kit-step-{step.bind}",
                                       daemon=True)

    def _wait_until_spawner_blocks(self) -> None:
        """Poll /proc until the spawning thread sleeps in its system call (bounded):
        a fixed delay alone races with a loaded machine's scheduler."""
        deadline = time.monotonic() + self.run.bound
        while time.monotonic() < deadline:
            if self.step.when_blocked == "child":
                # A forked child's calls are out of sight of `calling`: its one thread
                # asleep in a system call (not futex) is the signal. Where /proc will not
                # tell (an unprivileged, non-dumpable child, a sandbox), its call board
                # saying it is inside a blocking operation must do, with `after`.
                for pid, board in list(self.run.children.items()):
                    state = blocked_in_syscall(pid, pid)
                    if state or (state is None and waiters.in_blocking_call(board)):
                        return
            elif self.run.asleep_in_call(self.spawner):
                if self.spawner not in self.run.seen_asleep:
                    # /proc could not tell: give the call time to reach its sleep
                    time.sleep(ASLEEP_FALLBACK + 0.01)
                return
            time.sleep(0.001)
        # Waited the whole bound: the result may depend on it (see runner's circuit).
        note_overrun([WAIT_RAN_OUT])

    def _main(self) -> None:
        self.tid = threading.get_native_id()
        try:
            if self.step.when_blocked:
                self._wait_until_spawner_blocks()
            if self.step.after:
                time.sleep(self.step.after)
            self.run.execute(self.step.substeps, self.env, self.records, where=self.step.bind)
        except Exception as exc:  # noqa: BLE001 - reported against the behaviour
            self.failure = failure_of(exc)


class Run:
    """One example of one behaviour."""

    def __init__(self, behaviour: Behaviour, target: Target, params: dict,
                 bound: float = DEFAULT_BOUND, profile: str = "quick"):
        self.behaviour, self.target, self.params = behaviour, target, params
        self.bound = bound
        self.profile = profile            # scales `repeat` loops (kit.engine.repeat)
        self.groups: dict[str, waiters.Group] = {}
        self.released: set[int] = set()   # native ids of waiter threads the kit released
        self.owned: set[int] = set()
        self.lock = threading.Lock()
        self.threads: dict[str, _Thread] = {}
        self.variants: list[str] = []
        # native thread id -> the blocking call it is inside right now (for when_blocked)
        self.calling: dict[int, str] = {}
        # native ids of threads seen asleep (by /proc) inside the call they are in now, and
        # of those /proc could not tell about there (the time fallback applies to them)
        self.seen_asleep: set[int] = set()
        self.unseen: set[int] = set()
        # pid -> call board of each running in_child process
        self.children: dict[int, CallBoard] = {}
        # native ids of the threads a wait_blocked step saw asleep -> when the call they
        # slept in began and ended (None: not yet); judged by the step after it, the waker
        self.awaited: dict[int, tuple[float, float] | None] = {}

    # -- the public entry point -------------------------------------------------------

    def outcome(self) -> Outcome:
        records: list[StepRecord] = []
        status, message = CONFORMS, ""
        with scratch.example():
            try:
                env = {**profiles.bindings(self.profile), **self.params}
                self.execute(self.behaviour.steps, env, records)
            except StepFailure as exc:
                status, message = exc.status, exc.message
            finally:
                try:
                    leftover = self._finish_groups(list(self.groups), records)
                    leftover = self._finish_threads(records) or leftover
                finally:
                    self._close_owned()     # whatever went wrong in the threads' ending
                    pidfd.reap_children()   # spawn_child's children, released by the close
        if status == CONFORMS and leftover:
            status, message = leftover.status, leftover.message
        return Outcome(status, records, message, self.variants)

    # -- steps ------------------------------------------------------------------------

    def execute(self, steps: list[Step], env: dict, records: list[StepRecord],
                where: str = "main") -> None:
        awaited: dict[int, tuple[float, float] | None] = {}
        for step in steps:
            if step.action == "wait_blocked":
                awaited = self._wait_blocked(step.args)
            elif awaited:   # this step is the waker of the threads wait_blocked saw asleep
                began = time.monotonic()
                self._step(step, env, records, where)
                self._check_waker_in_time(awaited, began, step)
                awaited = {}
            else:
                self._step(step, env, records, where)

    def _step(self, step: Step, env: dict, records: list[StepRecord], where: str) -> None:
        if step.action == "sleep":
            time.sleep(step.args)
        elif step.action == "in_thread":
            worker = _Thread(self, step, env)
            try:
                worker.thread.start()
            except RuntimeError as exc:  # the machine's limit, not the kernel's answer
                raise StepFailure(ERROR, f"line {step.line}: could not start thread "
                                         f"{step.bind}: {exc} (a limit on threads or "
                                         f"processes such as RLIMIT_NPROC?)") from None
            # Only a started thread: the run's end joins every thread listed here.
            self.threads[step.bind] = worker
        elif step.action == "join":
            self._join(step, env, records)
        elif step.action == "in_child":
            self._in_child(step, env, records, where)
        elif step.action == "waiters":
            self._start_group(step, env)
        elif step.action == "woken":
            self._woken(step, env, records, where)
        elif step.action == "repeat":
            done = repeat.run_loop(self, step, env, records, where)
            if step.bind:
                env[step.bind] = done
        else:
            self._call(step, env, records, where)

    def _resolve_args(self, step: Step, env: dict) -> dict:
        op = OPERATIONS[step.action]
        args = dict(op.defaults)
        for name, raw in (step.args or {}).items():
            kind = op.args[name]
            if kind == "str" and not (isinstance(raw, str) and raw.startswith("$")):
                args[name] = raw
                continue
            if kind == "list" and isinstance(raw, list):  # a list stays a list, not an OR
                args[name] = [ex.evaluate(item, env) for item in raw]
                continue
            value = ex.evaluate(raw, env)
            if kind in ("int", "fd", "flags") and not isinstance(value, int):
                raise StepFailure(ERROR, f"line {step.line}: argument {name} of {step.action} "
                                         f"must be an integer, got {value!r}")
            args[name] = float(value) if kind == "seconds" else value
        return args

    def _call(self, step: Step, env: dict, records: list[StepRecord], where: str) -> None:
        op = OPERATIONS[step.action]
        try:
            args = self._resolve_args(step, env)
        except ex.MissingField as exc:
            raise StepFailure(DEVIATES, f"line {step.line}: {exc}") from None
        except ex.UnboundReference as exc:
            raise StepFailure(ERROR, f"line {step.line}: {exc}") from None
        shown = ", ".join(f"{k}={_show_arg(step.args[k], v)}" for k, v in args.items()
                          if k in (step.args or {}))
        if threading.get_native_id() in self.released:
            raise waiters.Released()      # released: its remaining steps are not run
        record = StepRecord(line=step.line, call=f"{step.action}({shown})", where=where)
        records.append(record)
        foreign = confinement.foreign_descriptors(op.args, args, self.owned)
        if foreign:
            _refuse(record, f"{', '.join(foreign)}: not a descriptor this behaviour created")
        bound = step.within or self.bound
        me = threading.get_native_id()
        # Only an upper bound on the call's time is judged without the run-queue wait.
        queued_before = run_queue_wait(me) if _bounds_duration(step) else None
        if op.blocking:
            with bounded(bound) as guard, target_call(step.line, where, record.call, bound,
                                                      _kind(op, args)):
                self.seen_asleep.discard(me)
                self.unseen.discard(me)
                self.calling[me] = record.call
                entered = time.monotonic()
                try:
                    result = _confined(op.fn, args, record)
                finally:
                    self.calling.pop(me, None)
                    if me in self.awaited and self.awaited[me] is None:
                        self.awaited[me] = (entered, time.monotonic())
            result.seen_asleep = True if me in self.seen_asleep else (
                None if me in self.unseen else False)
            if me in self.released:     # a waiter the kit released: not the target's answer
                raise waiters.Released()
            if guard.fired and result.errno == "EINTR":
                record.status = TIMEOUT
                record.result = result.as_dict()
                raise StepFailure(TIMEOUT, f"line {step.line}: {record.call} did not return "
                                           f"within {bound}s")
        else:
            # No watchdog here: such calls return at once, or bound themselves (an exec).
            with target_call(step.line, where, record.call, bound + UNGUARDED_EXTRA,
                             op.name):
                result = _confined(op.fn, args, record)
        if queued_before is not None:
            queued_after = run_queue_wait(me)
            if queued_after is not None:
                result.queued = queued_after - queued_before
        record.result = result.as_dict()
        self._track(step.action, args, result)
        expect, variant = self._expectation(step)
        record.expected, record.variant = expect, variant
        try:
            mismatches = expectations.check(expect, result, env) if expect else (
                [] if result.ok else [f"this set-up step failed with {result.errno}"])
        except ex.MissingField as exc:  # an earlier result lacked what this one is held to
            mismatches = [str(exc)]
        except PatternTimeout as exc:  # the spec's own regex ran away: not the target's fault
            record.status, record.mismatches = ERROR, [str(exc)]
            raise StepFailure(ERROR, f"line {step.line}: {exc}") from None
        if step.bind:
            env[step.bind] = result.value
        if mismatches:
            record.status, record.mismatches = DEVIATES, mismatches
            raise StepFailure(DEVIATES, f"line {step.line}: {record.call}: {mismatches[0]}")

    def _expectation(self, step: Step) -> tuple[dict | None, str | None]:
        for variant in step.differs:
            if self.target.gate_holds(variant):
                note = f"{gates.condition(variant)}: {variant.reason}"
                self.variants.append(f"line {step.line}: {note}")
                return variant.expect, note
        return step.expect, None

    def _track(self, action: str, args: dict, result: libc.Result) -> None:
        with self.lock:
            self.owned.update(result.created_fds)
            if action == "close":
                self.owned.discard(args["fd"])

    # -- threads and children ---------------------------------------------------------

    def _join(self, step: Step, env: dict, records: list[StepRecord]) -> None:
        worker = self.threads[step.args]
        worker.thread.join(step.within or self.bound * 2)
        if worker.thread.is_alive():
            # Left in self.threads: the run's end waits for it again, so it never
            # outlives the run (and its descriptors).
            raise StepFailure(TIMEOUT, f"line {step.line}: thread {step.args} did not finish")
        del self.threads[step.args]
        records.extend(worker.records)
        if worker.failure:
            raise worker.failure
        env.update({k: v for k, v in worker.env.items() if k not in env})

    def _wait_blocked(self, names: list[str]) -> dict:
        """Wait (bounded) until each named thread sleeps inside a blocking call, or has
        finished: a waker in this thread must not act before the waiter waits. A thread
        that returned at once (a target that does not block) is not waited for; its own
        expectation then tells. Returns self.awaited: each thread found in its call, and
        (filled in by that thread) when the call began and ended."""
        deadline = time.monotonic() + self.bound
        blind = False
        self.awaited = {}
        for name in names:
            worker = self.threads[name]
            while worker.thread.is_alive() and not self.asleep_in_call(worker.tid):
                if time.monotonic() >= deadline:
                    # the result may depend on it (see runner's circuit), as for when_blocked
                    note_overrun([WAIT_RAN_OUT])
                    return self.awaited
                time.sleep(0.001)
            if worker.thread.is_alive():
                # from now on the end of its call is noted, whenever this thread runs next
                self.awaited.setdefault(worker.tid, None)
            blind = blind or (worker.thread.is_alive() and worker.tid not in self.seen_asleep)
        if blind:   # /proc could not tell: give the calls time to reach their sleep
            time.sleep(ASLEEP_FALLBACK + 0.01)
        return self.awaited

    def _check_waker_in_time(self, awaited: dict[int, tuple[float, float] | None],
                             began: float, step: Step) -> None:
        """After the step that follows wait_blocked (the waker): if a thread's call had
        already ended before the waker began, the waker came too late to tell anything
        (a loaded machine held this thread back past the waiter's own timeout): the
        example is not judged, whatever the steps after would say, and is run again. A
        thread whose own steps failed is left to report that."""
        self.awaited = {}
        late = {tid: span for tid, span in awaited.items() if span and span[1] < began}
        if not late:
            return
        for worker in self.threads.values():
            if worker.tid in late:
                worker.thread.join(self.bound)
                if worker.failure is not None:
                    return                      # its own deviation comes out at its join
        lasted = ", ".join(f"{end - start:.3f}s" for start, end in late.values())
        raise StepFailure(LATE, f"line {step.line}: {step.action} began after "
                                f"{len(late)} of the threads wait_blocked saw asleep had left "
                                f"their call (it lasted {lasted}): the waker came too late to "
                                f"judge anything")

    def asleep_in_call(self, tid: int | None) -> bool:
        """Whether thread `tid` is inside a blocking call and asleep there (None from /proc:
        it cannot tell, so the in-call marker alone must do)."""
        call = self.calling.get(tid) if tid is not None else None
        if call is None:
            return False
        blocked = blocked_in_syscall(tid)
        if self.calling.get(tid) is call:   # still that very call
            if blocked:
                self.seen_asleep.add(tid)
            elif blocked is None:
                self.unseen.add(tid)
        return blocked is None or blocked

    def _finish_threads(self, records: list[StepRecord]) -> StepFailure | None:
        """Threads a failed run never joined: join them (bounded) so none is left behind."""
        failure = None
        for name, worker in list(self.threads.items()):
            worker.thread.join(self.bound * 2)
            records.extend(worker.records)
            if worker.thread.is_alive():
                failure = StepFailure(TIMEOUT, f"thread {name} did not finish")
            elif worker.failure and failure is None:
                failure = worker.failure
        self.threads.clear()
        return failure

    def _in_child(self, step: Step, env: dict, records: list[StepRecord], where: str) -> None:
        def work():
            child = Run(self.behaviour, self.target, {}, self.bound, self.profile)
            child.owned = set(self.owned)  # the parent's descriptors are the child's own too
            child_records: list[StepRecord] = []
            failure = None
            try:
                try:
                    child.execute(step.substeps, dict(env), child_records, where="child")
                finally:
                    leftover = child._finish_groups(list(child.groups), child_records)
            except StepFailure as exc:
                failure = [exc.status, exc.message]
            else:
                if leftover:
                    failure = [leftover.status, leftover.message]
            return {"records": [r.as_dict() for r in child_records], "failure": failure,
                    "overran": overran()}

        scratch.before_fork()   # the child's files land where the parent looks
        try:
            boards: list[CallBoard] = []
            status, data = run_forked(work, step.within or self.bound * 2,
                                      on_board=boards.append,
                                      on_start=lambda pid: self.children.update({
                                          pid: boards[0]}),
                                      stuck_after=after_bound(STUCK_GRACE))
        finally:
            self.children.clear()
        if status == "timeout" and data.in_call is not None:
            note_overrun([data.in_call.kind])
        elif status == "ok":
            note_overrun(data.get("overran", []))
        if status != "ok":
            records.append(StepRecord(line=step.line, call="in_child", where=where,
                                      status=TIMEOUT if status == "timeout" else ERROR,
                                      mismatches=[str(data)]))
            raise StepFailure(TIMEOUT if status == "timeout" else ERROR,
                              f"line {step.line}: child process: {data}")
        records.extend(StepRecord(**r) for r in data["records"])
        if data["failure"]:
            raise StepFailure(*data["failure"])

    # -- waiter groups ----------------------------------------------------------------

    def _start_group(self, step: Step, env: dict) -> None:
        count = ex.evaluate(step.args["count"], env)
        if isinstance(count, bool) or not isinstance(count, int) or \
                not 1 <= count <= waiters.MAX_WAITERS:
            raise StepFailure(ERROR, f"line {step.line}: waiters {step.bind}: count must be "
                                     f"an integer from 1 to {waiters.MAX_WAITERS}, got "
                                     f"{count!r}")
        group = waiters.Group(self, step.bind, step.args.get("kind", "thread"),
                              step.substeps, step.line)
        # Listed before it starts: whatever happens next, the run's end releases it.
        self.groups[step.bind] = group
        group.start(count, env, step.args.get("until_blocked", True))

    def _woken(self, step: Step, env: dict, records: list[StepRecord], where: str) -> None:
        group = self.groups[step.args]
        window = step.within or env[QUIET]
        expect = step.expect or {}
        woken, blocked, unsettled = group.watch(window, waiters.enough_for(expect, env))
        if unsettled:
            names = ", ".join(group.where(m) for m in unsettled)
            raise StepFailure(TIMEOUT, f"line {step.line}: woken({step.args}): {names} left "
                                       f"their call or never reached it, and neither "
                                       f"finished nor slept in it within {self.bound:g}s "
                                       f"after the window (a starved machine?)")
        for member in woken:
            records.extend(member.records)
        record = StepRecord(line=step.line, call=f"woken({step.args}, within {window:g} s)",
                            where=where, expected=step.expect or None)
        value = waiters.summary(woken, blocked)
        record.result = {"ret": len(woken), "errno": None, "value": value["woken"]}
        records.append(record)
        mismatches = waiters.judge(expect, env, woken, blocked, window)
        if mismatches:
            record.status, record.mismatches = DEVIATES, mismatches
            raise StepFailure(DEVIATES, f"line {step.line}: woken({step.args}): "
                                        f"{mismatches[0]}")
        failed = next((m for m in woken if m.failure), None)
        if failed:
            raise StepFailure(failed.failure.status,
                              f"waiter {group.where(failed)}: {failed.failure.message}")
        if step.bind:
            env[step.bind] = value

    def end_groups(self, steps: list[Step], records: list[StepRecord]) -> None:
        """Release the groups these steps started (a `repeat` iteration's own); raises the
        first failure of a member that finished unobserved."""
        names = [s.bind for s in steps if s.action == "waiters" and s.bind in self.groups]
        failure = self._finish_groups(names, records)
        if failure:
            raise failure

    def _finish_groups(self, names: list[str], records: list[StepRecord]) -> StepFailure | None:
        """Release what is still blocked, bounded; the first failure of a member no
        `woken` step judged, or of one that would not be released."""
        failure = None
        for name in names:
            group = self.groups.pop(name)
            stuck = group.release()
            # a finished thread's id may be the kernel's again for a later waiter
            self.released.difference_update(m.tid for m in group.members
                                            if m.tid is not None and m.handle is not None
                                            and not m.handle.is_alive())
            for member in group.members:
                if member.released:
                    records.append(StepRecord(line=group.line, call="still blocked at the end: "
                                                                   "released by the kit",
                                              where=group.where(member)))
                elif not member.reported:
                    records.extend(member.records)
                    if member.failure and failure is None:
                        failure = StepFailure(member.failure.status,
                                              f"waiter {group.where(member)}: "
                                              f"{member.failure.message}")
            if stuck and failure is None:
                failure = StepFailure(TIMEOUT, f"waiters {', '.join(stuck)} did not finish "
                                               f"when released")
        return failure

    def close_since(self, before: set[int]) -> None:
        """Close the descriptors the run came to own after `before` was taken."""
        with self.lock:
            for fd in sorted(self.owned - before):
                libc.libc.close(fd)
            self.owned &= before

    def _close_owned(self) -> None:
        with self.lock:
            for fd in sorted(self.owned):
                libc.libc.close(fd)
            self.owned.clear()
