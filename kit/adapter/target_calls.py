"""Which call on the target each thread of a checker is inside, readable by its parent.

A forked checker marks every call it makes on the target (its spec line, the call as the
trace shows it, when it started and its bound) in a small shared anonymous mapping made
before the fork. The parent, watching from outside, can then tell a target call stuck
past its bound (a timeout of the target, killed as soon as it is clearly stuck) from the
kit's own code running past the hard limit (a kit error, never blamed on the kernel).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

# start (monotonic s, 0 = slot free), bound (s), spec line, where ("main", a thread's
# name, "model"), the call as shown in the trace, its kind (operation and descriptor kind)
_SLOT = struct.Struct("=ddi28s196s64s")
SLOTS = 16              # threads of one checker inside a target call at the same time


@dataclass(frozen=True)
class InCall:
    """One call on the target, as the parent sees it."""

    line: int
    where: str
    call: str
    started: float
    bound: float
    kind: str = ""

    def running_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _bytes(text: str, size: int) -> bytes:
    data = text.encode("utf-8", "replace")
    return data if len(data) <= size else data[:size - 3] + b"..."


class CallBoard:
    """The shared mapping: written by the child, read by the parent."""

    def __init__(self):
        self.map = mmap.mmap(-1, _SLOT.size * SLOTS)   # MAP_SHARED|MAP_ANONYMOUS
        self.lock = threading.Lock()
        self.used = [False] * SLOTS

    def close(self) -> None:
        self.map.close()

    @contextmanager
    def calling(self, line: int, where: str, call: str, bound: float, kind: str = ""):
        with self.lock:
            slot = next((i for i, used in enumerate(self.used) if not used), None)
            if slot is not None:
                self.used[slot] = True
        if slot is None:      # more threads in calls than slots: unmarked, not refused
            yield
            return
        offset = slot * _SLOT.size
        # The start time goes in last (and is cleared first), so a reader that sees a
        # start never sees the previous call's line or label with it.
        _SLOT.pack_into(self.map, offset, 0.0, bound, line, _bytes(where, 28),
                        _bytes(call, 196), _bytes(kind, 64))
        struct.pack_into("=d", self.map, offset, time.monotonic())
        try:
            yield
        finally:
            struct.pack_into("=d", self.map, offset, 0.0)
            with self.lock:
                self.used[slot] = False

    def in_calls(self) -> list[InCall]:
        """The calls in progress right now (the parent's view)."""
        out = []
        for slot in range(SLOTS):
            offset = slot * _SLOT.size
            started, bound, line, where, call, kind = _SLOT.unpack_from(self.map, offset)
            if started and struct.unpack_from("=d", self.map, offset)[0] == started:
                out.append(InCall(line, _text(where), _text(call), started, bound,
                                  _text(kind)))
        return out

    def stuck(self, allowed, now: float | None = None) -> InCall | None:
        """A call still inside the target after `allowed(call)` seconds (its bound and
        a grace, see after_bound): the watchdog's interruption did not bring it back."""
        now = time.monotonic() if now is None else now
        late = [c for c in self.in_calls() if c.running_for(now) > allowed(c)]
        return min(late, key=lambda c: c.started) if late else None


def after_bound(grace: float):
    """The usual allowance: a call's own bound and `grace` seconds more."""
    return lambda call: call.bound + grace


_board: CallBoard | None = None     # set in a forked checker by kit.adapter.process
_overran: set[str] = set()          # kinds of this process's calls that outlived their bound


def use(board: CallBoard | None) -> None:
    global _board
    _board = board
    _overran.clear()


def overran() -> list[str]:
    """Kinds of the calls that outlived their bound in this process (the watchdog fired)."""
    return sorted(_overran)


def note_overrun(kinds) -> None:
    """Kinds that overran in a child of this process (an in_child step)."""
    _overran.update(k for k in kinds if k)


def fd_kind(fd: int) -> str:
    """What a descriptor is, without its inode number: 'anon_inode:[eventfd]', 'pipe'."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except (OSError, TypeError, ValueError):
        return "?"
    return _INODE.sub("", link)


_INODE = re.compile(r":\[\d+\]$")


@contextmanager
def target_call(line: int, where: str, call: str, bound: float, kind: str = ""):
    """Mark the body as a call on the target (nothing to mark outside a forked checker),
    and remember its kind if it outlives its bound."""
    started = time.monotonic()
    try:
        if _board is None:
            yield
        else:
            with _board.calling(line, where, call, bound, kind):
                yield
    finally:
        if time.monotonic() - started > bound:
            _overran.add(kind or call)
