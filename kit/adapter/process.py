"""fork and exec helpers: run work in a child with a bound, and look at a descriptor
from the far side of an execve(2)."""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from kit.adapter import target_calls
from kit.adapter.libc import Result
from kit.adapter.proc import parse_fdinfo
from kit.adapter.target_calls import CallBoard, InCall
from kit.adapter.watchdog import WATCHDOG_SIGNAL, TargetTimeout
from kit.registry import operation

EXEC_BOUND = 10.0


def collect_child(pid: int, read_end: int, what: str) -> tuple[bytes, int]:
    """Everything forked child `pid` writes to `read_end` until it closes it, and its wait
    status, within EXEC_BOUND: after that the child is killed and reaped, and the call is a
    timeout naming `what`."""
    chunks, deadline = [], time.monotonic() + EXEC_BOUND
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([read_end], [], [], left)[0]:
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise TargetTimeout(f"{what} did not finish within {EXEC_BOUND}s")
    return b"".join(chunks), os.waitpid(pid, 0)[1]


@operation(family="process", fd="fd")
def exec_probe(fd: int) -> Result:
    """fork + execve /bin/sh, which reports descriptor N as it sees it after the exec.

    value is {open, link, fdinfo}. The kit does not close anything itself: only
    close-on-exec decides what the new program inherits.
    """
    script = f'readlink /proc/$$/fd/{fd} && cat /proc/$$/fdinfo/{fd}'
    start = time.monotonic()
    try:
        proc = subprocess.run(["/bin/sh", "-c", script], close_fds=False, capture_output=True,
                              text=True, timeout=EXEC_BOUND, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TargetTimeout(f"exec probe did not finish within {EXEC_BOUND}s") from exc
    link, _, rest = proc.stdout.partition("\n")
    is_open = proc.returncode == 0 and bool(link)
    value = {"open": is_open, "link": link if is_open else None,
             "fdinfo": parse_fdinfo(rest) if is_open else {}}
    return Result(ret=0, value=value, duration=time.monotonic() - start)


# -- a forked child that never outlives its parent --------------------------------------

# The signal on which a child dumps its Python stacks (faulthandler), so a kit error can
# say where the kit's own code was when the hard limit ran out. Not one a spec can send
# unhandled: kit.adapter.signals refuses signals whose disposition Python thinks default.
DUMP_SIGNAL = WATCHDOG_SIGNAL - 1
STACK_WAIT = 1.0        # seconds to wait for that dump before the child is killed
REAP_WAIT = 5.0         # seconds for a killed child to be reaped (one stuck in D state is not)
WATCH_EVERY = 0.1       # seconds between looks at the child's target calls

_PR_SET_PDEATHSIG = 1
_FORKING = threading.Lock()     # see run_forked


@dataclass
class Overrun:
    """A child killed because it ran too long: inside a target call, or in the kit."""

    limit: float
    elapsed: float
    in_call: InCall | None = None      # the call on the target it was inside, if any
    stuck: bool = False                # killed early: the call was past its bound + grace
    stack: str = ""                    # the child's Python stacks (when in the kit's code)

    def __str__(self) -> str:
        if self.in_call is not None:
            c = self.in_call
            if self.stuck and c.running_for() < c.bound:   # allowed less than its bound
                return (f"line {c.line}: {c.call} had not returned after "
                        f"{c.running_for():.1f}s of its {c.bound:g}s bound; its process "
                        f"was killed")
            if self.stuck:
                return (f"line {c.line}: {c.call} did not return within {c.bound:g}s and "
                        f"ignored the watchdog's interruption; its process was killed after "
                        f"{c.running_for():.1f}s in the call")
            return (f"the behaviour did not finish within {self.limit:g}s; it was inside "
                    f"line {c.line}: {c.call} (for {c.running_for():.1f}s of its "
                    f"{c.bound:g}s bound), so its process was killed")
        return (f"the kit's own code ran past the limit of {self.limit:g}s (no call on the "
                f"target was in progress){where_in(self.stack)}, so its process was killed")


def where_in(stack: str) -> str:
    """' (in File "...", line N in f)' for the innermost frame of the dumped stack that
    took the signal (else the first), with the innermost frame of the kit's own code
    when that is another one (a regex runs in the re module, called from the kit)."""
    frames: list[str] = []
    for block in stack.split("\n\n"):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip().startswith("File ")]
        if lines and ("Current thread" in block or not frames):
            frames = lines
    if not frames:
        return ""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = next((f for f in frames if f'"{package}{os.sep}' in f), None)
    called = f", called from {ours}" if ours and ours != frames[0] else ""
    return f" (in {frames[0]}{called})"


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the thread that forked it ends, however it ends (even by
    SIGKILL or os._exit, where no finally block runs)."""
    import ctypes

    from kit.adapter.arch import syscall_number
    from kit.adapter.libc import own_libc

    libc = own_libc()
    # raw where the table has it: a preloaded library under test must not intercept it
    number = syscall_number("prctl")
    if number is not None:
        libc.syscall(ctypes.c_long(number), ctypes.c_long(_PR_SET_PDEATHSIG),
                     ctypes.c_long(signal.SIGKILL))
    else:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:      # the parent died before the request was in place
        os._exit(1)


def _child(work, wfd: int, dump_fd: int, parent: int, board: CallBoard) -> None:
    """The child's whole life: it always leaves by os._exit, never into the caller."""
    status = 0
    try:
        _die_with_parent(parent)
        # A process group of its own: the parent kills it with everything it started,
        # and a Ctrl-C at the terminal goes to the parent, which then kills it.
        os.setpgid(0, 0)
        faulthandler.register(DUMP_SIGNAL, file=dump_fd, all_threads=True)
        target_calls.use(board)
        payload = json.dumps({"data": work()}, default=repr).encode()
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        status = 1
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(wfd, view):]
    finally:
        os._exit(status)


def _kill(pid: int) -> bool:
    """SIGKILL the child and its process group, and reap it (bounded). True if reaped."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + REAP_WAIT
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _read_stack(pid: int, dump_fd: int) -> str:
    """Ask the child for its Python stacks (faulthandler) and read them, bounded."""
    try:
        os.kill(pid, DUMP_SIGNAL)
    except ProcessLookupError:
        return ""
    chunks, deadline = [], time.monotonic() + STACK_WAIT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([dump_fd], [], [], left if not chunks else min(left, 0.2))
        if not ready:
            if chunks:
                break          # the dump came and the child fell silent
            continue
        chunk = os.read(dump_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _wait_exit(pid: int, deadline: float) -> int | None:
    """waitpid, until the deadline (None: still running then)."""
    try:
        pidfd = os.pidfd_open(pid)      # readable once the child has exited
    except (AttributeError, OSError):
        pidfd = None                    # an older kernel: poll instead
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.002))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_forked(work, bound: float, on_start=None, *,
               stuck_after=None, on_board=None) -> tuple[str, object]:
    """Run `work()` in a forked child; it must return JSON-able data.

    Returns ("ok", data), ("crashed", description) or ("timeout", Overrun). The child is
    killed and reaped on every way out of this function (a timeout, an exception such as
    pytest-timeout's or KeyboardInterrupt), and dies with its parent where no way out
    runs at all (SIGKILL, os._exit). With `stuck_after` (a function of an InCall giving
    the seconds it may take, e.g. target_calls.after_bound), a call on the target still
    running after that ends the child at once.
    `on_start(pid)` is called in the parent once the child exists; `on_board(board)` gets
    the child's CallBoard (which target call it is inside), for a parent thread that
    watches it.
    """
    board = CallBoard()
    parent = os.getpid()
    # One fork at a time, from the pipes' making to the parent closing its write ends: a
    # child forked by another thread meanwhile would inherit them and hold this child's
    # result pipe open after it exits (seen with groups of waiter processes).
    with _FORKING:
        rfd, wfd = os.pipe()
        dump_r, dump_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The child's cyclic collector would touch every object it inherited, and so copy
        # the parent's whole heap page by page (Hypothesis, pytest: tens of MB per
        # behaviour); frozen, they are left alone there. The parent thaws them at once.
        gc.freeze()
        try:
            pid = os.fork()
        finally:
            if os.getpid() == parent:
                gc.unfreeze()
        if pid == 0:  # child
            _FORKING.release()      # its copy, taken by this very thread: nested forks work
            os.close(rfd)
            os.close(dump_r)
            _child(work, wfd, dump_w, parent, board)
        os.close(wfd)
        os.close(dump_w)
    reaped = False
    started = time.monotonic()
    try:
        try:
            os.setpgid(pid, pid)   # also here: whichever runs first, the group exists
        except OSError:
            pass                   # the child has exited already, or did it itself
        if on_board is not None:
            on_board(board)
        if on_start is not None:
            on_start(pid)
        chunks, deadline = [], started + bound
        while True:
            now = time.monotonic()
            left = deadline - now
            stuck = board.stuck(stuck_after, now) if stuck_after is not None else None
            if left <= 0 or stuck is not None:
                calls = board.in_calls()
                in_call = stuck or (min(calls, key=lambda c: c.started) if calls else None)
                stack = _read_stack(pid, dump_r) if in_call is None else ""
                reaped = True       # or as good as: _kill waited what it could
                _kill(pid)
                return "timeout", Overrun(bound, time.monotonic() - started, in_call,
                                          stuck is not None, stack)
            wait = left if stuck_after is None else min(left, WATCH_EVERY)
            ready, _, _ = select.select([rfd], [], [], wait)
            if ready:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        # The result is in (or the child closed its end): it is leaving, but only the
        # deadline says how long that may take.
        status = _wait_exit(pid, deadline)
        reaped = True
        if status is None:
            _kill(pid)
            return "timeout", Overrun(bound, time.monotonic() - started)
    finally:
        if not reaped:
            _kill(pid)
        for fd in (rfd, dump_r):
            os.close(fd)
        board.close()
    if os.WIFSIGNALED(status):
        return "crashed", f"child killed by signal {os.WTERMSIG(status)}"
    try:
        message = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return "crashed", "child sent no result"
    if "error" in message:
        return "crashed", message["error"]
    return "ok", message.get("data")
