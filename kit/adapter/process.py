"""fork and exec helpers: run work in a child with a bound, and look at a descriptor
from the far side of an execve(2)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

from kit.adapter.libc import Result
from kit.adapter.proc import parse_fdinfo
from kit.adapter.watchdog import TargetTimeout
from kit.registry import operation

EXEC_BOUND = 10.0


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


def run_forked(work, bound: float, on_start=None) -> tuple[str, object]:
    """Run `work()` in a forked child; it must return JSON-able data.

    Returns ("ok", data), ("crashed", description) or ("timeout", description).
    The child never returns into the caller's stack: it always leaves by os._exit.
    `on_start(pid)` is called in the parent once the child exists.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(rfd)
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
    os.close(wfd)
    if on_start is not None:
        on_start(pid)
    chunks, deadline = [], time.monotonic() + bound
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", f"child did not finish within {bound}s"
            ready, _, _ = select.select([rfd], [], [], left)
            if ready:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "crashed", f"child killed by signal {os.WTERMSIG(status)}"
    try:
        message = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return "crashed", "child sent no result"
    if "error" in message:
        return "crashed", message["error"]
    return "ok", message.get("data")
