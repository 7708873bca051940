"""signalfd(2) over the pending signals of one thread, as signal(7) describes them.

Programs send signals only to their own thread, which blocks them all (signalfd(2):
"the set of signals ... should first be blocked"). What the pages promise, and the model
checks:
- a standard signal is pending at most once ("only one instance is queued"); real-time
  signals queue, each with its value;
- a signalfd is readable while a signal in its mask is pending; a read returns as many
  signalfd_siginfo records as fit and are pending, and consumes them;
- order: standard signals before real-time ones ("Linux ... gives priority to standard
  signals"), real-time signals lowest number first, each number in the order sent. The
  order among standard signals is unspecified, so any order is accepted.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from kit.model.eventfd import POLLIN, Expected

# The signals programs use: two standard, three real-time (glibc's SIGRTMIN, past the
# two it keeps for itself). The kit's watchdog signal (SIGRTMAX-1) is far from these.
SIGNALS = {"SIGUSR1": int(signal.SIGUSR1), "SIGUSR2": int(signal.SIGUSR2),
           "SIGRTMIN": int(signal.SIGRTMIN), "SIGRTMIN+1": int(signal.SIGRTMIN) + 1,
           "SIGRTMIN+2": int(signal.SIGRTMIN) + 2}
NAMES = {number: name for name, number in SIGNALS.items()}


def is_realtime(name: str) -> bool:
    return SIGNALS[name] >= signal.SIGRTMIN


@dataclass
class Pending:
    """The calling thread's pending signals."""

    standard: set[str] = field(default_factory=set)
    realtime: list[tuple[str, int]] = field(default_factory=list)   # (name, value), as sent

    def send(self, name: str, value: int) -> bool:
        """Queue a signal; False if it changed nothing (a standard signal already pending)."""
        if not is_realtime(name):
            if name in self.standard:
                return False
            self.standard.add(name)
            return True
        self.realtime.append((name, value))
        return True

    def any_of(self, mask: frozenset[str]) -> bool:
        return bool(self.standard & mask) or any(n in mask for n, _ in self.realtime)

    def check_read(self, mask: frozenset[str], room: int, got: list[dict]) -> list[str]:
        """Compare the records one read returned ({name, int} each) with what may be
        returned; consume them. Problems as sentences, empty if the read was allowed."""
        standard = sorted(self.standard & mask, key=SIGNALS.get)
        # Real-time: lowest number first; within a number, in the order sent (stable sort).
        realtime = sorted(((n, v) for n, v in self.realtime if n in mask), key=lambda r:
                          SIGNALS[r[0]])
        want = min(room, len(standard) + len(realtime))
        if len(got) != want:
            return [(f"{len(got)} record(s) read, the model expects {want} (room for {room}; "
                     f"pending in the mask: {_show(standard, realtime)})")]
        problems = []
        first, rest = got[: len(standard)], got[len(standard):]
        names = [r["name"] for r in first]
        if len(set(names)) != len(names) or not set(names) <= set(standard):
            problems.append(f"records {names} where the model expects the pending standard "
                            f"signals {standard} first, each once, in any order")
        expected_rt = realtime[: len(rest)]
        seen_rt = [(r["name"], r["int"]) for r in rest]
        if seen_rt != expected_rt:
            problems.append(f"real-time records {seen_rt} where the model expects "
                            f"{expected_rt} (lowest number first, then in the order sent)")
        if problems:
            return problems
        self.standard -= set(names)
        for record in expected_rt:
            self.realtime.remove(record)        # the first equal entry: the oldest
        return []


def _show(standard: list[str], realtime: list[tuple[str, int]]) -> str:
    return ", ".join(standard + [f"{n}({v})" for n, v in realtime]) or "nothing"


@dataclass
class SignalfdModel:
    mask: frozenset[str]
    pending: Pending

    def read_expected_empty(self) -> Expected | None:
        """EAGAIN if no signal of the mask is pending (non-blocking signalfd)."""
        return None if self.pending.any_of(self.mask) else Expected(-1, "EAGAIN")

    def readiness(self) -> int:
        return POLLIN if self.pending.any_of(self.mask) else 0
